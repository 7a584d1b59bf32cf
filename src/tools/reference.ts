// The config reference (docs/config-reference.md) and the shipped JSON Schema
// (schema/config-v1.json), both generated from the one zod schema. `npm run build` writes
// them; a unit test fails when the committed copies differ from what the schema says.
import { configJsonSchema } from '../config/schema.js';

interface SchemaNode {
  type?: string | string[];
  description?: string;
  properties?: Record<string, SchemaNode>;
  required?: string[];
  items?: SchemaNode;
  anyOf?: SchemaNode[];
  enum?: unknown[];
  const?: unknown;
  minimum?: number;
  maximum?: number;
  pattern?: string;
}

function typeOf(node: SchemaNode): string {
  if (node.const !== undefined) return JSON.stringify(node.const);
  if (node.enum) return node.enum.map((v) => JSON.stringify(v)).join(' \\| ');
  if (node.anyOf) return node.anyOf.map(typeOf).join(' or ');
  if (node.type === 'array') return `list of ${node.items ? typeOf(node.items) : 'values'}`;
  if (node.type === 'integer' && node.minimum !== undefined) return `integer ${node.minimum}-${node.maximum}`;
  if (node.type === 'object') return 'object';
  return String(node.type ?? 'value');
}

function section(title: string, node: SchemaNode, out: string[], nested: [string, SchemaNode][]): void {
  out.push(`## ${title}`, '', '| field | type | required | meaning |', '|---|---|---|---|');
  for (const [name, child] of Object.entries(node.properties ?? {})) {
    const required = node.required?.includes(name) ? 'yes' : '';
    const item = child.type === 'array' ? child.items : child;
    if (item?.type === 'object' && item.properties) nested.push([`${title}.${name}${child.type === 'array' ? '[]' : ''}`, item]);
    out.push(`| \`${name}\` | ${typeOf(child)} | ${required} | ${(child.description ?? '').replace(/\|/g, '\\|')} |`);
  }
  out.push('');
}

export function configReferenceMarkdown(): string {
  const schema = configJsonSchema() as SchemaNode;
  const out = [
    '# Config reference (v1)',
    '',
    '<!-- Generated from the zod schema (src/config/schema.ts) by `npm run build`; do not edit. -->',
    '',
    'A config is YAML or JSON. Unknown fields are errors. What the fields mean together, and the',
    'choices natctl makes, is in [config.md](config.md). The JSON Schema is `schema/config-v1.json`',
    '(also `natctl schema`).',
    '',
  ];
  const queue: [string, SchemaNode][] = [['config', schema]];
  while (queue.length) {
    const [title, node] = queue.shift()!;
    section(title, node, out, queue);
  }
  return `${out.join('\n').trimEnd()}\n`;
}

export function configJsonSchemaText(): string {
  return `${JSON.stringify(configJsonSchema(), null, 2)}\n`;
}
