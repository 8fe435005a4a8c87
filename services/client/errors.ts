/** The typed client's own errors; the ones a call can end with are core's (services/core/errors.ts). */
import { TidemarkError } from '../core/client-side/index.js';

/**
 * A followed restore's coordinator could not be reached again within the reconnect time. The
 * restore itself may still be running in the cluster; `restoreId` names it for a later resume.
 */
export class RestoreFollowLostError extends TidemarkError {
  override name = 'RestoreFollowLostError';
  constructor(
    readonly restoreId: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
