/** Assertions on thrown errors shared by unit tests. */
import { expect } from 'vitest';
import { ConfigError } from '../../services/core/errors.js';

/** Runs `run`, expects it to throw a ConfigError, and returns it for checks on its message. */
export function configError(run: () => unknown): ConfigError {
  try {
    run();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}
