// ESM entry: the same objects as the CommonJS entry.
import tethered from './index.js'

export const { spawnCollect, runProcess, spawn, Supervisor, Pool } = tethered
export default tethered
