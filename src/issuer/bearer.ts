/** The credential of `Authorization: Bearer <credential>`, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  const match = header && /^Bearer ([^\s]+)$/i.exec(header);
  return match ? match[1] : undefined;
}
