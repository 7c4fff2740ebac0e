import { runSim } from './sim.js';
const n = Number(process.argv[2] ?? 20);
const base = Number(process.argv[3] ?? 1);
const mode = process.argv[4] ?? '';
const t0 = performance.now();
let ev = 0, msgs = 0, ep = 0, cr = 0, adm = 0, settle = 0, maxSettle = 0, fails = 0;
for (let seed = base; seed < base + n; seed++) {
  try {
    const s = runSim({ seed, unsafeReplyBeforePersist: mode === 'unsafe', nodeMutation: mode === 'quorum' ? 'quorum-off-by-one' : null, restartChecks: process.env.RC === '1' });
    ev += s.events; msgs += s.messages; ep += s.epochs; cr += s.crashes; adm += s.adminRequests; settle += s.settledAtMs; maxSettle = Math.max(maxSettle, s.settledAtMs);
  } catch (e) { fails++; if (fails <= 3) console.log(String(e).slice(0, 4000)); if (mode) { console.log('caught at seed', seed, 'after', seed - base + 1); process.exit(0);} }
}
console.log(`${n} seeds ${(performance.now() - t0).toFixed(0)}ms fails=${fails} events/seed=${ev / n} msgs/seed=${msgs / n} epochs/seed=${ep / n} crashes=${cr/n} admin=${adm/n} settle avg=${settle/n} max=${maxSettle}`);
