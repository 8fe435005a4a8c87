/**
 * The one clock Tidemark's deciding code reads: lease expiry, due times, deadlines and round
 * timing all come from a {@link Clock} passed in, so a test or the simulation can drive time
 * through the real logic instead of a copy of it.
 */

/** A source of the current time. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
}

/** The host's wall clock (`Date.now()`). */
export const systemClock: Clock = { now: () => Date.now() };
