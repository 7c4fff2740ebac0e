// Wire schemas for peer messages. zod checks the SHAPE of what arrives from the network
// (types, sizes, no extra fields, no prototype keys); core/node.ts then checks the
// MEANING (epochs, ballots, membership). A message failing here never reaches the core.

import { z } from 'zod';
import { NODE_ID_PATTERN, type NodeId } from '../core/types.js';
import type { Message } from '../core/node.js';
import { membersMax, urlLengthMax } from '../core/membership.js';

const nodeId = z.string().regex(NODE_ID_PATTERN).transform((s) => s as NodeId);
const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const epoch = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);
const url = z.string().min(1).max(urlLengthMax);
const ballot = z.strictObject({ round: count, id: nodeId });

const member = z.strictObject({
  id: nodeId,
  peerUrl: url,
  clientUrl: url,
  status: z.enum(['active', 'down', 'joining']),
  placement: z.enum(['owner', 'incoming', 'outgoing']),
});

const clusterConfig = z.strictObject({
  epoch,
  members: z.array(member).min(1).max(membersMax),
  replicationFactor: z.number().int().min(1).max(16),
  minInSync: z.number().int().min(1).max(16),
  partitions: z.number().int().min(1).max(1 << 21),
  vnodesPerNode: z.number().int().min(1).max(4096),
});

const newMember = z.strictObject({ id: nodeId, peerUrl: url, clientUrl: url });

const change = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('mark-down'), id: nodeId }),
  z.strictObject({ kind: z.literal('mark-joining'), id: nodeId }),
  z.strictObject({ kind: z.literal('mark-active'), id: nodeId }),
  z.strictObject({ kind: z.literal('add'), member: newMember }),
  z.strictObject({ kind: z.literal('decommission'), id: nodeId }),
  z.strictObject({ kind: z.literal('remove'), id: nodeId }),
  z.strictObject({ kind: z.literal('noop') }),
]);

const requestId = z.string().min(1).max(128);

export const logEntrySchema = z.strictObject({
  config: clusterConfig,
  change,
  request: z.strictObject({ origin: nodeId, requestId }).nullable(),
});

const accepted = z.strictObject({ slot: count, ballot, value: logEntrySchema });

const adminResult = z.discriminatedUnion('status', [
  z.strictObject({ status: z.literal('committed'), epoch }),
  z.strictObject({ status: z.literal('rejected'), error: z.string().max(1024) }),
  z.strictObject({ status: z.literal('unavailable'), reason: z.enum(['no-quorum', 'timeout', 'busy', 'not-member']) }),
]);

const base = { from: nodeId, clusterName: z.string().max(64), epoch };

export const messageSchema = z.discriminatedUnion('type', [
  z.strictObject({ ...base, type: z.literal('heartbeat'), ringChecksum: z.string().max(64), leader: ballot.nullable() }),
  z.strictObject({ ...base, type: z.literal('prepare'), ballot, fromSlot: count }),
  z.strictObject({ ...base, type: z.literal('promise'), ballot, fromSlot: count, accepted: accepted.nullable() }),
  z.strictObject({ ...base, type: z.literal('accept'), ballot, slot: count, value: logEntrySchema }),
  z.strictObject({ ...base, type: z.literal('accepted'), ballot, slot: count }),
  z.strictObject({ ...base, type: z.literal('nack'), ballot, promised: ballot }),
  z.strictObject({ ...base, type: z.literal('fetch'), fromEpoch: count }),
  z.strictObject({
    ...base,
    type: z.literal('configs'),
    reason: z.enum(['decided', 'fetch-response', 'push']),
    entries: z.array(logEntrySchema).max(64),
  }),
  z.strictObject({ ...base, type: z.literal('propose'), requestId, change }),
  z.strictObject({ ...base, type: z.literal('propose-result'), requestId, result: adminResult }),
]);

/** Messages in one POST /peer/v1/messages. */
export const messagesPerBatchMax = 512;

export const batchSchema = z.strictObject({
  from: nodeId,
  messages: z.array(z.unknown()).min(1).max(messagesPerBatchMax),
});

export type ParsedMessage = { ok: true; msg: Message } | { ok: false; error: string };

export function parseMessage(raw: unknown): ParsedMessage {
  const r = messageSchema.safeParse(raw);
  if (r.success) return { ok: true, msg: r.data as Message };
  const i = r.error.issues[0]!;
  return { ok: false, error: `${i.path.join('.') || 'message'}: ${i.message}` };
}
