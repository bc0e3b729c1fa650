/** What a management operation refuses with; the admin API maps each to its status (admin-api/errors.ts). */

/** Input a person can correct (the admin API answers 422). */
export class InvalidInputError extends Error {}
/** No such object, or one the caller may not see (404: another org's objects are not found). */
export class NotFoundError extends InvalidInputError {}
/** The object is in a state that forbids the change, such as revoked (409). */
export class ConflictError extends InvalidInputError {}
/** The caller may not do this at all, whatever the object (403). */
export class ForbiddenError extends InvalidInputError {}
