// ESM entry: the same objects as the CommonJS entry.
import tethered from './index.js'

export const { spawnCollect, runProcess, Supervisor } = tethered
export default tethered
