// ESM entry: the same objects as the CommonJS entry.
import tethered from './index.js'

export const { spawnCollect, runProcess, spawn, Supervisor } = tethered
export default tethered
