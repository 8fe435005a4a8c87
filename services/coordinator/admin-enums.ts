/**
 * The admin API's enums (admin.proto), mapped from the coordinator's own values here, at the API
 * edge, so the round logic keeps its own names and never imports the admin API.
 */
import { RoundOutcome } from '../gen/tidemark/v1/admin.js';
import type { RoundResult } from './round-runner.js';

/** The admin API's name for a round result ('in-doubt' is still pending to a caller). */
export function roundOutcome(outcome: RoundResult['outcome']): RoundOutcome {
  if (outcome === 'committed') return RoundOutcome.ROUND_OUTCOME_COMMITTED;
  if (outcome === 'aborted') return RoundOutcome.ROUND_OUTCOME_ABORTED;
  return RoundOutcome.ROUND_OUTCOME_PENDING;
}
