/**
 * Which coordinator a call goes to (docs/API.md#finding-the-leader). A client knows one or more
 * coordinators (TIDEMARK_COORDINATOR=c1:7700,c2:7700); any of them answers read calls, only the
 * leader the calls that change something. A call goes to the coordinator that answered last; it
 * moves on only when the failed attempt did nothing, so that sending it again cannot do anything
 * twice:
 *
 * - a standby refused a leader-only call (NotLeaderError, nothing was done): to the leader's
 *   address its trailer names, else to the next coordinator of the list;
 * - the call never reached a server (refused, unresolvable): to the next coordinator.
 *
 * Any other failure, or one after the call may have run, is the caller's. Pure: no sockets.
 */
import { ConfigError, isConnectFailure, NotLeaderError } from '../core/client-side/index.js';

/** Parses `host:port[,host:port...]`; throws a ConfigError for an empty list. */
export function parseCoordinatorList(text: string): string[] {
  const addresses = [...new Set(text.split(',').map((a) => a.trim()).filter((a) => a !== ''))];
  if (addresses.length === 0) {
    throw new ConfigError(`no coordinator address in "${text}": set TIDEMARK_COORDINATOR or --coordinator to host:port, or to a comma-separated list of them`);
  }
  return addresses;
}

export class CoordinatorRoute {
  readonly addresses: readonly string[];
  private preferred: string;

  /** @param followLeader send a call a standby refused on to the leader (false: the caller gets the NotLeaderError) */
  constructor(
    list: string,
    private readonly followLeader = true,
  ) {
    this.addresses = parseCoordinatorList(list);
    this.preferred = this.addresses[0];
  }

  /** Where the next call goes first: the coordinator that answered last (or was named as leader). */
  get current(): string {
    return this.preferred;
  }

  /** A call to `address` succeeded: later calls start there. */
  answered(address: string): void {
    this.preferred = address;
  }

  /**
   * After a call failed with `err`: where to send it next, or undefined to give up with `err`.
   * `tried` holds the addresses already tried.
   */
  next(err: unknown, tried: ReadonlySet<string>): string | undefined {
    const untried = this.addresses.find((a) => !tried.has(a));
    if (err instanceof NotLeaderError) {
      if (!this.followLeader) return undefined;
      if (err.leaderAddress && !tried.has(err.leaderAddress)) {
        this.preferred = err.leaderAddress;
        return err.leaderAddress;
      }
      return untried;
    }
    if (isConnectFailure(err)) return untried;
    return undefined;
  }
}
