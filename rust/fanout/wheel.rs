//! A hashed timer wheel for batch deadlines: scheduling is O(1) and each tick touches only its
//! slot, so 100k connections' 500 ms deadlines spread over the wheel instead of one sweep.

use super::index::ConnId;

/// Slots per rotation; with 10 ms ticks one rotation is 5.12 s, longer deadlines wait in their
/// slot for more rotations.
const SLOTS: usize = 512;

#[derive(Debug, Clone, Copy)]
struct Timer {
    conn: ConnId,
    deadline_ms: i64,
    generation: u32,
}

pub struct TimerWheel {
    tick_ms: i64,
    slots: Vec<Vec<Timer>>,
    /// The tick the next `expire` starts from.
    cursor: Option<i64>,
    len: usize,
}

impl TimerWheel {
    pub fn new(tick_ms: i64) -> TimerWheel {
        TimerWheel {
            tick_ms: tick_ms.max(1),
            slots: vec![Vec::new(); SLOTS],
            cursor: None,
            len: 0,
        }
    }

    pub fn tick_ms(&self) -> i64 {
        self.tick_ms
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Schedules `conn`; `generation` lets the owner ignore timers it has since replaced.
    pub fn schedule(&mut self, conn: ConnId, deadline_ms: i64, generation: u32) {
        let tick = deadline_ms.div_euclid(self.tick_ms);
        // Already due: clamp to the cursor, where the next expire starts looking.
        let cursor = *self.cursor.get_or_insert(tick);
        let tick = tick.max(cursor);
        self.slots[tick.rem_euclid(SLOTS as i64) as usize].push(Timer {
            conn,
            deadline_ms,
            generation,
        });
        self.len += 1;
    }

    /// Moves every timer due at `now_ms` into `due` as `(conn, generation)`.
    pub fn expire(&mut self, now_ms: i64, due: &mut Vec<(ConnId, u32)>) {
        let now_tick = now_ms.div_euclid(self.tick_ms);
        let from = self.cursor.unwrap_or(now_tick).min(now_tick);
        // After a long stall every slot is visited once, not once per missed tick.
        let from = from.max(now_tick - SLOTS as i64 + 1);
        for tick in from..=now_tick {
            let slot = &mut self.slots[tick.rem_euclid(SLOTS as i64) as usize];
            let before = slot.len();
            slot.retain(|t| {
                if t.deadline_ms <= now_ms {
                    due.push((t.conn, t.generation));
                    false
                } else {
                    true
                }
            });
            self.len -= before - slot.len();
        }
        // The current tick's slot may still hold timers due later in this tick.
        self.cursor = Some(now_tick);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_at_their_deadline_not_before() {
        let mut w = TimerWheel::new(10);
        let mut due = Vec::new();
        w.expire(1_000, &mut due);
        w.schedule(1, 1_500, 0);
        w.schedule(2, 1_505, 0);
        w.schedule(3, 1_000 + 10 * 512 + 500, 0); // a rotation later, same slot as #1
        w.expire(1_499, &mut due);
        assert!(due.is_empty());
        w.expire(1_500, &mut due);
        assert_eq!(due, vec![(1, 0)]);
        due.clear();
        w.expire(1_509, &mut due);
        assert_eq!(due, vec![(2, 0)]);
        due.clear();
        w.expire(6_000, &mut due);
        assert!(due.is_empty(), "the next rotation's timer waits");
        w.expire(6_620, &mut due);
        assert_eq!(due, vec![(3, 0)]);
        assert!(w.is_empty());
    }

    #[test]
    fn late_expire_and_past_deadlines_still_fire() {
        let mut w = TimerWheel::new(10);
        let mut due = Vec::new();
        w.expire(0, &mut due);
        for i in 0..100 {
            w.schedule(i, i as i64 * 100, 7);
        }
        w.expire(1_000_000, &mut due); // a long stall
        assert_eq!(due.len(), 100);
        due.clear();
        w.schedule(5, 10, 1); // in the past
        w.expire(1_000_001, &mut due);
        assert_eq!(due, vec![(5, 1)]);
    }
}
