/** Before any file of the browser suite: fail the run at once, with how to install it, when Chromium is missing. */
import { requireChromium } from './browser.js';

export default function setup(): void {
  requireChromium();
}
