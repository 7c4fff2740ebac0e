export async function bench(_args: string[]): Promise<number> { throw new Error("bench: not built yet"); }
