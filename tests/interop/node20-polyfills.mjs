// Helia's current stack uses a few Node 22 built-ins; Debian/Ubuntu ship Node
// 20 (this machine: v20.20). Loaded with `node --import` before anything else.
if (typeof Promise.withResolvers !== 'function') {
  Promise.withResolvers = function withResolvers () {
    let resolve, reject
    const promise = new this((res, rej) => { resolve = res; reject = rej })
    return { promise, resolve, reject }
  }
}
