// The agent's log: one line per event on stderr, as text for a person or as one JSON object
// per line (`--log-format json`) for a log pipeline. stdout stays free.
export type LogFormat = 'text' | 'json';
export type LogLevel = 'info' | 'warn' | 'error';

export interface LogFields {
  [key: string]: unknown;
}

export interface Logger {
  log(level: LogLevel, event: string, message: string, fields?: LogFields): void;
}

function textValue(value: unknown): string {
  if (typeof value === 'string') return /[\s"=]/.test(value) ? JSON.stringify(value) : value;
  return JSON.stringify(value);
}

export function createLogger(format: LogFormat, write: (line: string) => void = (line) => void process.stderr.write(line)): Logger {
  return {
    log(level, event, message, fields = {}) {
      const time = new Date().toISOString();
      if (format === 'json') {
        write(`${JSON.stringify({ time, level, event, msg: message, ...fields })}\n`);
        return;
      }
      const rest = Object.entries(fields)
        .filter(([, v]) => v !== undefined && !(Array.isArray(v) && v.length === 0))
        .map(([k, v]) => `${k}=${textValue(v)}`)
        .join(' ');
      write(`${time} ${level} ${event}: ${message}${rest ? ` ${rest}` : ''}\n`);
    },
  };
}
