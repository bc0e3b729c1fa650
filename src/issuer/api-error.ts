/** An error of the issuer's own JSON API (token endpoint, admin API): answered as `{error: code, message}` with `status`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}
