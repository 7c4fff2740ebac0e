// ringkv/client: the public entry point of the client library (docs/client.md).
//
//   import { RingkvClient } from 'ringkv/client';
//   const kv = new RingkvClient({ endpoints: ['http://127.0.0.1:7379'] });
//   await kv.put('greeting', 'hello');
//   (await kv.get('greeting'))?.value.toString();   // 'hello'
//   await kv.close();

export {
  RingkvClient,
  type AttemptEvent,
  type CallOptions,
  type Consistency,
  type DeleteOptions,
  type DeleteResult,
  type GetOptions,
  type GetResult,
  type ListOptions,
  type ListPage,
  type PutOptions,
  type PutResult,
  type RawAnswer,
  type RequestOptions,
  type RingkvClientOptions,
} from './client.js';
export { CLIENT_ERROR_CODES, parseErrorBody, RingkvError, type ClientErrorCode, type RingkvErrorDetails } from './errors.js';
export { DEFAULT_RETRY_POLICY, type RetryPolicy } from './retry.js';
export { PartitionMap, type Route } from './routing.js';
