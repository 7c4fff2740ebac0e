// An append-only byte arena: where the lmdb engine keeps the records of one memory layer
// (lmdb-store.ts) until a checkpoint carries them into LMDB.
//
// Why: a layer holds every durable write for up to a checkpoint interval (100 ms), longer
// than V8's young generation keeps an object, so whatever a layer entry is made of gets
// promoted to the old generation and is only freed by a mark-compact. An entry used to be
// five objects (the entry, the record, its clock, two buffers). Now it is a position in
// this arena: the layer's maps hold numbers, and the records sit in a few large buffers
// outside the JavaScript heap that are dropped together with the layer.
//
// A position is chunk index × 2^20 + offset; below 2^30 (about a thousand chunks, far
// more than a layer uses) it is a small integer, which V8 stores in a map without boxing.

/** Offsets within a chunk stay below this: a position is chunk × CHUNK_SPAN + offset. */
const CHUNK_SPAN = 1 << 20;
/** The first chunk; each next one doubles, up to CHUNK_SPAN. A quiet layer stays small. */
const FIRST_CHUNK_BYTES = 16 * 1024;
/** An entry longer than this gets a chunk of its own (at offset 0), so no chunk is mostly waste. */
const OWN_CHUNK_BYTES = CHUNK_SPAN / 4;
/** Each entry is its length (u32) and its bytes. */
const PREFIX_BYTES = 4;

export class Arena {
  private readonly chunks: Buffer[] = [];
  /** Index of the chunk entries are appended to, -1 before the first; and bytes used in it. */
  private current = -1;
  private used = 0;
  private nextChunkBytes = FIRST_CHUNK_BYTES;

  /** Copies `b` in; returns its position. */
  add(b: Uint8Array): number {
    const need = PREFIX_BYTES + b.byteLength;
    let index: number;
    let offset: number;
    if (need > OWN_CHUNK_BYTES) {
      index = this.chunks.push(Buffer.allocUnsafeSlow(need)) - 1;
      offset = 0;
    } else {
      if (this.current === -1 || this.used + need > this.chunks[this.current]!.length) {
        // Never smaller than the entry: an early chunk is smaller than the largest shared entry.
        this.current = this.chunks.push(Buffer.allocUnsafeSlow(Math.max(this.nextChunkBytes, need))) - 1;
        this.used = 0;
        this.nextChunkBytes = Math.min(CHUNK_SPAN, this.nextChunkBytes * 2);
      }
      index = this.current;
      offset = this.used;
      this.used += need;
    }
    const chunk = this.chunks[index]!;
    chunk.writeUInt32LE(b.byteLength, offset);
    chunk.set(b, offset + PREFIX_BYTES);
    return index * CHUNK_SPAN + offset;
  }

  /** The bytes at `pos`: a view into the arena (it keeps its chunk alive while it is held). */
  view(pos: number): Buffer {
    const chunk = this.chunks[Math.floor(pos / CHUNK_SPAN)]!;
    const at = pos % CHUNK_SPAN;
    return chunk.subarray(at + PREFIX_BYTES, at + PREFIX_BYTES + chunk.readUInt32LE(at));
  }
}
