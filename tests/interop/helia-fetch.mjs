// Fetches a UnixFS DAG by CID from one libp2p peer over Bitswap with Helia
// (the JS IPFS implementation), and prints one JSON line per file:
//   {"path": "dir/file", "size": N, "sha256": "hex"}
// then {"done": true, "root": "<cid>"}.
//
// Usage: node helia-fetch.mjs <multiaddr with /p2p/> <cid> [timeout-ms]
//
// Helia is built with only TCP + Noise + Yamux + Identify (what a shoal node
// speaks) and Bitswap as its only block broker, so every byte it returns came
// over Bitswap from the dialled peer, verified by Helia against its CID.

import { createHash } from 'node:crypto'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import { unixfs } from '@helia/unixfs'
import { identify } from '@libp2p/identify'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createHeliaLight } from 'helia'
import { CID } from 'multiformats/cid'

const [addr, cidText, timeoutText] = process.argv.slice(2)
if (addr === undefined || cidText === undefined) {
  console.error('usage: node helia-fetch.mjs <multiaddr> <cid> [timeout-ms]')
  process.exit(2)
}
const signal = AbortSignal.timeout(Number(timeoutText ?? 60000))

const helia = withBitswap(withLibp2pLight(createHeliaLight({}), {
  transports: [tcp()],
  connectionEncrypters: [noise()],
  streamMuxers: [yamux()],
  services: { identify: identify() }
}))

async function walk (fs, cid, path) {
  const stat = await fs.stat(cid, { signal })
  if (stat.type === 'directory') {
    for await (const entry of fs.ls(cid, { signal })) {
      await walk(fs, entry.cid, path === '' ? entry.name : `${path}/${entry.name}`)
    }
    return
  }
  const hash = createHash('sha256')
  let size = 0
  for await (const chunk of fs.cat(cid, { signal })) {
    hash.update(chunk)
    size += chunk.length
  }
  console.log(JSON.stringify({ path, size, sha256: hash.digest('hex') }))
}

try {
  await helia.start()
  await helia.libp2p.dial(multiaddr(addr), { signal })
  const root = CID.parse(cidText)
  await walk(unixfs(helia), root, '')
  console.log(JSON.stringify({ done: true, root: root.toString() }))
} catch (err) {
  console.error(`helia fetch failed: ${err?.stack ?? err}`)
  process.exitCode = 1
} finally {
  await helia.stop()
}
