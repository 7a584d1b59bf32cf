// Writes the generated docs (see reference.ts). Run by `npm run build`.
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { configJsonSchemaText, configReferenceMarkdown } from './reference.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
writeFileSync(join(root, 'docs/config-reference.md'), configReferenceMarkdown());
writeFileSync(join(root, 'schema/config-v1.json'), configJsonSchemaText());
