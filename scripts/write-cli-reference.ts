/** Writes docs/cli.md from the command declarations: `npm run docs:cli`. */
import { writeFileSync } from 'node:fs';
import { COMMANDS } from '../src/cli/commands/index.js';
import { referenceMarkdown } from '../src/cli/help.js';

writeFileSync(new URL('../docs/cli.md', import.meta.url), referenceMarkdown(COMMANDS));
