// One store write as a write-ahead log payload (wal.ts): the ops in order, records in
// record-codec.ts's layout, metadata values in the meta database's own encoding.
//
//   u32 op count, then per op a u8 kind and:
//     put              u32 partition | str key | u32 length | record bytes
//     remove           u32 partition | str key
//     remove-partition u32 partition
//     meta             str key | u32 length | encoded value
//     meta-remove      str key
//     meta-bytes       str key | u32 length | the value (a byte string, logged as is)
//   str = u32 UTF-8 length | UTF-8 bytes

import type { WriteOp } from './store.js';

const PUT = 1;
const REMOVE = 2;
const REMOVE_PARTITION = 3;
const META = 4;
const META_REMOVE = 5;
const META_BYTES = 6;

/** A logged op as replay needs it: records and metadata values still encoded. */
export type LoggedOp =
  | { readonly kind: 'put'; readonly partition: number; readonly key: string; readonly bytes: Buffer }
  | { readonly kind: 'remove'; readonly partition: number; readonly key: string }
  | { readonly kind: 'remove-partition'; readonly partition: number }
  | { readonly kind: 'meta'; readonly key: string; readonly bytes: Buffer }
  | { readonly kind: 'meta-remove'; readonly key: string }
  | { readonly kind: 'meta-bytes'; readonly key: string; readonly bytes: Buffer };

/**
 * `encoded[i]` is op i's encoded record (put) or metadata value (meta: the value itself
 * when it is a byte string, logged as meta-bytes); null otherwise.
 * The payload starts after `reserve` bytes left unwritten (room for the frame header, so
 * that the log need not copy the payload into a frame).
 */
export function encodeOps(ops: readonly WriteOp[], encoded: readonly (Buffer | null)[], reserve = 0): Buffer {
  let size = reserve + 4;
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    size += 1;
    if (op.kind !== 'meta' && op.kind !== 'meta-remove') size += 4;
    if (op.kind !== 'remove-partition') size += 4 + Buffer.byteLength(op.key);
    if (op.kind === 'put' || op.kind === 'meta') size += 4 + encoded[i]!.length;
  }
  const b = Buffer.allocUnsafe(size);
  let o = b.writeUInt32LE(ops.length, reserve);
  const str = (s: string): void => {
    const n = b.write(s, o + 4, 'utf8');
    b.writeUInt32LE(n, o);
    o += 4 + n;
  };
  const bytes = (x: Buffer): void => {
    o = b.writeUInt32LE(x.length, o);
    o += x.copy(b, o);
  };
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!;
    switch (op.kind) {
      case 'put':
        b[o++] = PUT;
        o = b.writeUInt32LE(op.partition, o);
        str(op.key);
        bytes(encoded[i]!);
        break;
      case 'remove':
        b[o++] = REMOVE;
        o = b.writeUInt32LE(op.partition, o);
        str(op.key);
        break;
      case 'remove-partition':
        b[o++] = REMOVE_PARTITION;
        o = b.writeUInt32LE(op.partition, o);
        break;
      case 'meta':
        b[o++] = op.value instanceof Uint8Array ? META_BYTES : META;
        str(op.key);
        bytes(encoded[i]!);
        break;
      case 'meta-remove':
        b[o++] = META_REMOVE;
        str(op.key);
        break;
    }
  }
  return b;
}

export function decodeOps(b: Buffer): LoggedOp[] {
  let o = 0;
  const u32 = (): number => {
    const v = b.readUInt32LE(o);
    o += 4;
    return v;
  };
  const str = (): string => {
    const n = u32();
    const s = b.toString('utf8', o, o + n);
    o += n;
    return s;
  };
  const bytes = (): Buffer => {
    const n = u32();
    const x = b.subarray(o, o + n);
    o += n;
    return x;
  };
  const count = u32();
  const out: LoggedOp[] = [];
  for (let i = 0; i < count; i++) {
    const kind = b[o++];
    switch (kind) {
      case PUT: {
        const partition = u32();
        const key = str();
        out.push({ kind: 'put', partition, key, bytes: bytes() });
        break;
      }
      case REMOVE: {
        const partition = u32();
        out.push({ kind: 'remove', partition, key: str() });
        break;
      }
      case REMOVE_PARTITION:
        out.push({ kind: 'remove-partition', partition: u32() });
        break;
      case META: {
        const key = str();
        out.push({ kind: 'meta', key, bytes: bytes() });
        break;
      }
      case META_REMOVE:
        out.push({ kind: 'meta-remove', key: str() });
        break;
      case META_BYTES: {
        const key = str();
        out.push({ kind: 'meta-bytes', key, bytes: bytes() });
        break;
      }
      default:
        throw new Error(`write-ahead log payload has an unknown op kind ${kind} at byte ${o - 1}`);
    }
  }
  if (o !== b.length) throw new Error(`write-ahead log payload has ${b.length - o} bytes after its ${count} ops`);
  return out;
}
