/** Every command, in the order help and docs/cli.md list them. */
import type { CommandSpec } from '../command.js';
import { adminCommands } from './admins.js';
import { agentCommands } from './agents.js';
import { clientCommands } from './client.js';
import { clusterCommands } from './clusters.js';
import { grantCommands } from './grants.js';
import { issuerCommands } from './issuer.js';
import { policyCommands } from './policies.js';
import { proxyCommands } from './proxy.js';
import { rbacCommands } from './rbac.js';
import { sessionCommands } from './sessions.js';
import { relayCommands } from './relay.js';
import { storeCommands } from './store.js';

export const COMMANDS: CommandSpec[] = [...issuerCommands, ...agentCommands, ...clusterCommands, ...adminCommands, ...grantCommands, ...policyCommands, ...sessionCommands, ...clientCommands, ...proxyCommands, ...relayCommands, ...rbacCommands, ...storeCommands];
