// Branded identifiers: mixing a node id with a key, or an epoch with a seq, is a bug
// the compiler should catch.

export type NodeId = string & { readonly __brand: 'NodeId' };
export type Epoch = number & { readonly __brand: 'Epoch' };
export type Seq = number & { readonly __brand: 'Seq' };
export type PartitionId = number & { readonly __brand: 'PartitionId' };

export const NODE_ID_PATTERN = /^[a-z0-9-]{1,32}$/;

export function nodeId(s: string): NodeId {
  if (!NODE_ID_PATTERN.test(s)) throw new Error(`invalid node id ${JSON.stringify(s)}`);
  return s as NodeId;
}
export const epoch = (n: number): Epoch => n as Epoch;
export const seq = (n: number): Seq => n as Seq;
export const partitionId = (n: number): PartitionId => n as PartitionId;

/** Programmer-error assertion: crashes on a broken invariant (never used for bad input). */
export function assert(cond: unknown, message: string): asserts cond {
  if (!cond) throw new Error(`assertion failed: ${message}`);
}
