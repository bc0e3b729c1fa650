/**
 * The issuer's whole state behind one interface (DESIGN §9): agents,
 * clusters, admins, signing keys' public halves, revocations, relay
 * connections and settings, on SQLite (the embedded default, in the data
 * directory) or PostgreSQL (several issuer/hub replicas on separate
 * machines). The engines and the SQL live in ./store/; nothing outside it
 * writes SQL.
 */
export { openStore, type StoreLocation, StoreUrlError } from './store/open.js';
export { StoreUnavailableError } from './store/engine.js';
export { SchemaTooNewError } from './store/migrations.js';
export { type Admin, type Agent, AlreadyExistsError, type Cluster, type ListFilter, type IssuerStore, type PublicSigningKey, RELAY_CONNECTION_STALE_HEARTBEATS, type RelayConnection, type Revocation } from './store/types.js';
export type { GrantFilter, GrantStateReport, GrantStore } from './store/grant-sql.js';
export type { PolicyStore, PolicySubject, PolicySubjectKind, StoredPolicy } from './store/policy-sql.js';
