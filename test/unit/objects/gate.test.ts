import { describe, expect, it } from 'vitest'
import { IngestGate } from '../../../src/objects/gate.ts'

const tick = async (ms = 5): Promise<void> => { await new Promise((r) => setTimeout(r, ms)) }

describe('IngestGate', () => {
  it('runs an exclusive section only when no upload is in flight, and holds new uploads back meanwhile', async () => {
    const gate = new IngestGate()
    const events: string[] = []
    const leaveA = await gate.enter()
    const sweep = gate.exclusive(async () => { events.push('sweep start'); await tick(20); events.push('sweep end') })
    await tick()
    expect(events).toEqual([])
    events.push('upload A done')
    leaveA()
    await tick()
    const b = gate.enter().then((leave) => { events.push('upload B in'); leave() })
    await Promise.all([sweep, b])
    expect(events).toEqual(['upload A done', 'sweep start', 'sweep end', 'upload B in'])
  })

  it('never runs two exclusive sections at once', async () => {
    const gate = new IngestGate()
    let inside = 0
    let most = 0
    await Promise.all(Array.from({ length: 5 }, async () => {
      await gate.exclusive(async () => { inside++; most = Math.max(most, inside); await tick(2); inside-- })
    }))
    expect(most).toBe(1)
  })

  it('counts uploads in flight and tolerates a double leave', async () => {
    const gate = new IngestGate()
    const leave = await gate.enter()
    expect(gate.inFlight).toBe(1)
    leave()
    leave()
    expect(gate.inFlight).toBe(0)
  })
})
