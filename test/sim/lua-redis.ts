/**
 * An in-memory Redis for the simulation that runs Tidemark's own Lua scripts
 * (services/core/redis/scripts/*.lua, the files Redis executes) in a Lua VM (fengari), with the
 * few commands they call: strings with an expiry (GET, SET [PX], INCR, EXISTS, PEXPIRE, DEL) and
 * hashes (HGET, HSET). Nothing here decides anything for the protocol: the scripts do. Time is
 * the simulation's: each call says what time it is, and a key whose expiry has passed is gone.
 *
 * Replies follow Redis's conversion: a missing value is Lua `false`, integers are Lua integers,
 * and a script's integer reply comes back as a number, its `false` as null.
 * test/integration/redis-model-conformance.test.ts runs the same calls against a real Redis.
 */
import fengari, { type LuaState } from 'fengari';
import { REDIS_SCRIPTS, type RedisScriptName } from '../../services/core/index.js';

const { lua, lauxlib, lualib, to_luastring } = fengari;

type Value = { kind: 'string'; value: string; expiresAt?: number } | { kind: 'hash'; fields: Map<string, string>; expiresAt?: number };

export class LuaRedis {
  private readonly data = new Map<string, Value>();
  private readonly L: LuaState;
  private readonly compiled = new Map<RedisScriptName, number>();
  /** The time of the call being served. */
  private now = 0;
  /** A fault for the call being served: GET of this key answers this value, whatever is stored. */
  private forged: { key: string; value: string } | undefined;

  constructor() {
    this.L = lauxlib.luaL_newstate();
    lualib.luaL_openlibs(this.L);
    const L = this.L;
    lua.lua_createtable(L, 0, 1);
    lua.lua_pushjsfunction(L, (state) => this.call(state));
    lua.lua_setfield(L, -2, to_luastring('call'));
    lua.lua_setglobal(L, to_luastring('redis'));
    for (const name of Object.keys(REDIS_SCRIPTS) as RedisScriptName[]) {
      if (lauxlib.luaL_loadstring(L, to_luastring(REDIS_SCRIPTS[name])) !== lua.LUA_OK) {
        throw new Error(`script ${name} does not compile: ${lua.lua_tojsstring(L, -1)}`);
      }
      this.compiled.set(name, lauxlib.luaL_ref(L, lua.LUA_REGISTRYINDEX));
    }
  }

  /**
   * EVAL of one of Tidemark's scripts at time `now`: its integer reply, or null for a Lua false/nil.
   * `forge` is an injected fault for broken variants: inside this call, GET of `forge.key`
   * answers `forge.value` (for example, the lease key answers the writer's own holder string, so
   * the script's fence cannot refuse it).
   */
  eval(name: RedisScriptName, keys: string[], args: Array<string | number>, now: number, forge?: { key: string; value: string }): number | string | null {
    const L = this.L;
    this.now = now;
    this.forged = forge;
    this.setArray('KEYS', keys);
    this.setArray('ARGV', args.map(String));
    lua.lua_rawgeti(L, lua.LUA_REGISTRYINDEX, this.compiled.get(name)!);
    if (lua.lua_pcall(L, 0, 1, 0) !== lua.LUA_OK) {
      const message = lua.lua_tojsstring(L, -1);
      lua.lua_settop(L, 0);
      this.forged = undefined;
      throw new Error(`script ${name} failed: ${message}`);
    }
    this.forged = undefined;
    const type = lua.lua_type(L, -1);
    let reply: number | string | null = null;
    if (type === lua.LUA_TNUMBER) reply = Math.trunc(lua.lua_tonumber(L, -1));
    else if (type === lua.LUA_TSTRING) reply = lua.lua_tojsstring(L, -1);
    else if (type === lua.LUA_TBOOLEAN && lua.lua_toboolean(L, -1)) reply = 1;
    lua.lua_settop(L, 0);
    return reply;
  }

  /** GET, outside a script (a plain read by a process). */
  get(key: string, now: number): string | undefined {
    const value = this.live(key, now);
    return value?.kind === 'string' ? value.value : undefined;
  }

  /** The expiry of a key, if it has one and is there. */
  expiresAt(key: string, now: number): number | undefined {
    return this.live(key, now)?.expiresAt;
  }

  /** HGET, outside a script. */
  hget(key: string, field: string, now: number): string | undefined {
    const value = this.live(key, now);
    return value?.kind === 'hash' ? value.fields.get(field) : undefined;
  }

  /** HGETALL, outside a script. */
  hgetall(key: string, now: number): Map<string, string> {
    const value = this.live(key, now);
    return value?.kind === 'hash' ? new Map(value.fields) : new Map();
  }

  /** HDEL, outside a script. */
  hdel(key: string, fields: string[], now: number): void {
    const value = this.live(key, now);
    if (value?.kind === 'hash') for (const field of fields) value.fields.delete(field);
  }

  /** FLUSHALL: Redis lost. */
  flushall(): void {
    this.data.clear();
  }

  private live(key: string, now: number): Value | undefined {
    const value = this.data.get(key);
    if (value?.expiresAt !== undefined && value.expiresAt <= now) {
      this.data.delete(key);
      return undefined;
    }
    return value;
  }

  private setArray(name: string, values: string[]): void {
    const L = this.L;
    lua.lua_createtable(L, values.length, 0);
    values.forEach((value, i) => {
      lua.lua_pushstring(L, to_luastring(value));
      lua.lua_rawseti(L, -2, i + 1);
    });
    lua.lua_setglobal(L, to_luastring(name));
  }

  /** redis.call from a script: the commands Tidemark's scripts use, with Redis's replies. */
  private call(L: LuaState): number {
    const argc = lua.lua_gettop(L);
    const argv: string[] = [];
    for (let i = 1; i <= argc; i += 1) argv.push(lua.lua_tojsstring(L, i));
    const [command, key, ...rest] = argv;
    let reply: number | string | null;
    try {
      reply = this.run(command.toUpperCase(), key, rest);
    } catch (err) {
      return lauxlib.luaL_error(L, to_luastring((err as Error).message.replaceAll('%', '%%')));
    }
    if (reply === null) lua.lua_pushboolean(L, false);
    else if (typeof reply === 'number') lua.lua_pushinteger(L, reply);
    else lua.lua_pushstring(L, to_luastring(reply));
    return 1;
  }

  private run(command: string, key: string, args: string[]): number | string | null {
    const value = this.live(key, this.now);
    const str = (): string | undefined => {
      if (value && value.kind !== 'string') throw new Error(`WRONGTYPE ${command} on hash ${key}`);
      return value?.value;
    };
    const hash = (): Map<string, string> | undefined => {
      if (value && value.kind !== 'hash') throw new Error(`WRONGTYPE ${command} on string ${key}`);
      return value?.fields;
    };
    switch (command) {
      case 'EXISTS':
        return value ? 1 : 0;
      case 'GET':
        if (this.forged?.key === key) return this.forged.value;
        return str() ?? null;
      case 'SET': {
        let expiresAt: number | undefined;
        if (args.length === 3 && args[1].toUpperCase() === 'PX') expiresAt = this.now + Number(args[2]);
        else if (args.length !== 1) throw new Error(`SET with ${args.slice(1).join(' ')} is not modelled`);
        this.data.set(key, { kind: 'string', value: args[0], expiresAt });
        return 'OK';
      }
      case 'INCR': {
        const current = str();
        const next = (current === undefined ? 0 : Number(current)) + 1;
        if (!Number.isSafeInteger(next)) throw new Error(`ERR value is not an integer: ${key}`);
        this.data.set(key, { kind: 'string', value: String(next), expiresAt: value?.expiresAt });
        return next;
      }
      case 'PEXPIRE':
        if (!value) return 0;
        value.expiresAt = this.now + Number(args[0]);
        return 1;
      case 'DEL':
        return this.data.delete(key) && value ? 1 : 0;
      case 'HGET':
        return hash()?.get(args[0]) ?? null;
      case 'HSET': {
        const fields = hash() ?? new Map<string, string>();
        let added = 0;
        for (let i = 0; i + 1 < args.length; i += 2) {
          if (!fields.has(args[i])) added += 1;
          fields.set(args[i], args[i + 1]);
        }
        if (!value) this.data.set(key, { kind: 'hash', fields });
        return added;
      }
      default:
        throw new Error(`redis.call('${command}') is not modelled by the simulation's Redis`);
    }
  }
}
