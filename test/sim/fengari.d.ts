/** The part of fengari (a Lua VM in JavaScript, no types of its own) that test/sim/lua-redis.ts uses. */
declare module 'fengari' {
  export type LuaState = object;
  export type LuaString = Uint8Array;
  export function to_luastring(s: string): LuaString;
  export function to_jsstring(s: LuaString): string;
  export const lua: {
    LUA_OK: number;
    LUA_TNIL: number;
    LUA_TBOOLEAN: number;
    LUA_TNUMBER: number;
    LUA_TSTRING: number;
    LUA_TTABLE: number;
    LUA_REGISTRYINDEX: number;
    lua_gettop(L: LuaState): number;
    lua_settop(L: LuaState, index: number): void;
    lua_type(L: LuaState, index: number): number;
    lua_isinteger(L: LuaState, index: number): boolean;
    lua_tointeger(L: LuaState, index: number): number;
    lua_tonumber(L: LuaState, index: number): number;
    lua_toboolean(L: LuaState, index: number): boolean;
    lua_tojsstring(L: LuaState, index: number): string;
    lua_pushinteger(L: LuaState, n: number): void;
    lua_pushboolean(L: LuaState, b: boolean): void;
    lua_pushnil(L: LuaState): void;
    lua_pushstring(L: LuaState, s: LuaString): void;
    lua_pushjsfunction(L: LuaState, f: (L: LuaState) => number): void;
    lua_createtable(L: LuaState, narr: number, nrec: number): void;
    lua_rawseti(L: LuaState, index: number, i: number): void;
    lua_rawgeti(L: LuaState, index: number, i: number): number;
    lua_setfield(L: LuaState, index: number, k: LuaString): void;
    lua_setglobal(L: LuaState, name: LuaString): void;
    lua_pcall(L: LuaState, nargs: number, nresults: number, msgh: number): number;
    lua_error(L: LuaState): never;
  };
  export const lauxlib: {
    luaL_newstate(): LuaState;
    luaL_loadstring(L: LuaState, s: LuaString): number;
    luaL_ref(L: LuaState, t: number): number;
    luaL_error(L: LuaState, fmt: LuaString): never;
  };
  export const lualib: {
    luaL_openlibs(L: LuaState): void;
  };
}
