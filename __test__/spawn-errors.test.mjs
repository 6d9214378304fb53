// A command that cannot start rejects with an Error shaped like Node's spawn errors:
// code, errno (negative), syscall 'spawn <command>', path, spawnargs.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync, chmodSync, mkdirSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { constants } from 'node:os'
import { spawnCollect } from 'tethered'
import { tempDir, outcome } from './helpers.mjs'

async function expectSpawnError(promise, { code, command, args, cwd, why }) {
  const o = await outcome(promise)
  assert.equal(o.ok, false, `expected a rejection, got ${JSON.stringify(o.value)}`)
  const err = o.error
  assert.ok(err instanceof Error, 'an Error instance')
  assert.equal(err.code, code)
  assert.equal(err.errno, -constants.errno[code], 'errno is negative, as Node gives it')
  assert.equal(err.syscall, `spawn ${command}`)
  assert.equal(err.path, command)
  assert.deepEqual(err.spawnargs, args)
  // A directory that cannot be entered is named, so it is not read as a missing command.
  assert.equal(err.message, cwd ? `spawn ${command} ${code}: cwd '${cwd}' ${why}` : `spawn ${command} ${code}`)
  assert.equal(err.cwd, cwd)
  return err
}

test('ENOENT: a command not found on PATH', async () => {
  await expectSpawnError(spawnCollect('tethered-no-such-command-xyz', ['a', 'b c']), {
    code: 'ENOENT', command: 'tethered-no-such-command-xyz', args: ['a', 'b c'],
  })
})

test('ENOENT: an absolute path that does not exist', async () => {
  await expectSpawnError(spawnCollect('/nonexistent/tethered/cmd'), {
    code: 'ENOENT', command: '/nonexistent/tethered/cmd', args: [],
  })
})

test('ENOENT: the command is looked up on the PATH the child gets (options.env.PATH)', async () => {
  await expectSpawnError(spawnCollect('sh', ['-c', 'true'], { env: { PATH: '/nonexistent-dir' } }), {
    code: 'ENOENT', command: 'sh', args: ['-c', 'true'],
  })
})

test('EACCES: a file without execute permission, by path', async (t) => {
  const { dir, remove } = tempDir()
  t.after(remove)
  const file = join(dir, 'not-executable.sh')
  writeFileSync(file, '#!/bin/sh\necho should not run\n')
  chmodSync(file, 0o644)
  await expectSpawnError(spawnCollect(file, ['x']), { code: 'EACCES', command: file, args: ['x'] })
})

test('EACCES: a non-executable file found through PATH', async (t) => {
  const { dir, remove } = tempDir()
  t.after(remove)
  writeFileSync(join(dir, 'tethered-plain-file'), 'echo should not run\n')
  chmodSync(join(dir, 'tethered-plain-file'), 0o644)
  await expectSpawnError(
    spawnCollect('tethered-plain-file', [], { env: { PATH: `${dir}:/usr/bin:/bin` } }),
    { code: 'EACCES', command: 'tethered-plain-file', args: [] },
  )
})

test('EACCES: a directory given as the command', async (t) => {
  const { dir, remove } = tempDir()
  t.after(remove)
  mkdirSync(join(dir, 'subdir'))
  await expectSpawnError(spawnCollect(join(dir, 'subdir')), { code: 'EACCES', command: join(dir, 'subdir'), args: [] })
})

test('ENOTDIR: a command path that goes through a regular file', async (t) => {
  const { dir, remove } = tempDir()
  t.after(remove)
  const file = join(dir, 'plain')
  writeFileSync(file, '')
  await expectSpawnError(spawnCollect(join(file, 'cmd'), ['1']), { code: 'ENOTDIR', command: join(file, 'cmd'), args: ['1'] })
})

test('ENOTDIR: a cwd that is a regular file', async (t) => {
  const { dir, remove } = tempDir()
  t.after(remove)
  const file = join(dir, 'plain')
  writeFileSync(file, '')
  await expectSpawnError(spawnCollect('true', [], { cwd: file }), {
    code: 'ENOTDIR', command: 'true', args: [], cwd: file, why: 'is not a directory',
  })
})

test('ENOENT: a cwd that does not exist (and nothing runs)', async (t) => {
  const { dir, remove } = tempDir()
  t.after(remove)
  const flag = join(dir, 'ran')
  await expectSpawnError(spawnCollect('/bin/sh', ['-c', `touch ${flag}`], { cwd: join(dir, 'missing') }), {
    code: 'ENOENT', command: '/bin/sh', args: ['-c', `touch ${flag}`], cwd: join(dir, 'missing'), why: 'does not exist',
  })
  assert.equal(existsSync(flag), false)
})

test('the error matches what child_process reports for the same failure', async () => {
  const { spawn } = await import('node:child_process')
  const nodeErr = await new Promise((resolve) => spawn('tethered-no-such-command-xyz', ['q']).on('error', resolve))
  const ours = await spawnCollect('tethered-no-such-command-xyz', ['q']).catch((e) => e)
  for (const key of ['code', 'errno', 'syscall', 'path', 'spawnargs', 'message']) {
    assert.deepEqual(ours[key], nodeErr[key], key)
  }
})
