// A server-sent events parser for what GET /v1/events sends (`event` and `data` fields;
// comments and `retry` are skipped), fed with text as it arrives.

export class SseParser {
  private buffer = '';

  constructor(private readonly onEvent: (type: string, data: string) => void) {}

  push(text: string): void {
    this.buffer += text.replace(/\r\n?/g, '\n');
    for (let end = this.buffer.indexOf('\n\n'); end >= 0; end = this.buffer.indexOf('\n\n')) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      let type = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') type = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length > 0) this.onEvent(type, data.join('\n'));
    }
  }
}
