declare module 'node-gyp-build' {
  /** Loads the addon found under `dir` (build/Release, then prebuilds/<platform>-<arch>). */
  function load(dir: string): unknown;
  namespace load {
    /** The path of the addon that `load(dir)` would load; throws when there is none. */
    function resolve(dir: string): string;
  }
  export = load;
}
