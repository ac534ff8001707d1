//! Turns: how many phone connections a door works for at once (`[http] served_at_once`).
//!
//! After a power cut every phone of a site connects within seconds. Served all at once, each
//! phone's requests queue behind every other phone's and every boot ends late; served a few
//! hundred at a time, phones already booting finish first and the rest wait in the kernel's
//! accept queue, before their first request, where waiting costs nothing (HAProxy's `maxconn`
//! does the same). A turn is for work, not for waiting: a connection that waits on the network
//! — for the phone's next request, for a slow client to read, for a dripped header or body —
//! longer than `keep` gives its turn to the next phone, and takes one again when its next
//! request has arrived. So idle keep-alive connections, slow clients and firmware downloads
//! over a slow link never hold the door shut; and a connection that never pauses (a load
//! generator, a proxy) goes back in line after [`REQUESTS_PER_TURN`] requests.

use crate::doors::watched::{Call, Watch, Watched};
use prometheus_client::metrics::counter::Counter;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Requests a connection is answered in one turn before it queues again behind the phones
/// waiting: more than a phone's boot asks for (about 14 files), so a booting phone keeps its
/// turn to the end, and a connection that never pauses cannot keep others out.
pub const REQUESTS_PER_TURN: u32 = 32;

/// One door's turns.
#[derive(Debug)]
pub struct Turns {
    seats: Semaphore,
    keep: Duration,
    waits: Counter,
}

impl Turns {
    /// `at_once` turns (at least one); a connection keeps its turn while it waits on the
    /// network no longer than `keep`; `waits` counts the connections that found no turn free.
    pub fn new(at_once: usize, keep: Duration, waits: Counter) -> Arc<Turns> {
        Arc::new(Turns {
            seats: Semaphore::new(at_once.clamp(1, Semaphore::MAX_PERMITS)),
            keep,
            waits,
        })
    }

    /// Waits for a free turn, for a connection not accepted yet.
    pub async fn next(self: &Arc<Self>) -> Arc<Turn> {
        let turn = Arc::new(Turn {
            turns: self.clone(),
            held: AtomicBool::new(false),
        });
        turn.take().await;
        turn
    }

    /// Turns free now.
    #[cfg(test)]
    fn free(&self) -> usize {
        self.seats.available_permits()
    }
}

/// One connection's claim on its door's turns: held while the server works for it, given back
/// by [`TurnIo`] when the connection waits on the network longer than `keep`, and when the
/// connection ends.
#[derive(Debug)]
pub struct Turn {
    turns: Arc<Turns>,
    held: AtomicBool,
}

impl Turn {
    /// Takes a turn again if this connection gave its up (waiting behind the connections and
    /// new phones already waiting: tokio's semaphore is first come, first served). The door
    /// calls it once a request's head is in; an upload body that then waits long enough to give
    /// the turn away is stored without one (rare, and little work).
    pub async fn take(&self) {
        if self.held.load(Ordering::Acquire) {
            return;
        }
        let seats = &self.turns.seats;
        let seat = match seats.try_acquire() {
            Ok(seat) => seat,
            Err(_) => {
                self.turns.waits.inc();
                // The door's semaphore is never closed, so this cannot fail; were it closed,
                // the connection would go on without a turn rather than stop.
                match seats.acquire().await {
                    Ok(seat) => seat,
                    Err(_) => return,
                }
            }
        };
        seat.forget();
        self.held.store(true, Ordering::Release);
    }

    /// Gives the turn back, if held.
    pub fn give_up(&self) {
        if self.held.swap(false, Ordering::AcqRel) {
            self.turns.seats.add_permits(1);
        }
    }

    /// Whether this connection holds a turn now.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::Acquire)
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.give_up();
    }
}

/// A connection's socket that gives up its turn once a read or write has waited `keep`.
pub type TurnIo<T> = Watched<T, TurnWatch>;

/// The clock of a [`TurnIo`]. Without a turn (a door without turns) it only passes results on.
pub struct TurnWatch {
    turn: Option<Arc<Turn>>,
    /// Created the first time the connection waits with a turn held, then reset.
    clock: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
}

impl TurnWatch {
    pub fn new(turn: Option<Arc<Turn>>) -> TurnWatch {
        TurnWatch {
            turn,
            clock: None,
            waiting: false,
        }
    }
}

impl Watch for TurnWatch {
    /// A `Pending` with the turn held starts the clock (once per wait), and the turn goes when
    /// it runs out; anything else ends the wait.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        _: Call,
        polled: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        let Some(turn) = &self.turn else {
            return polled;
        };
        if polled.is_ready() {
            self.waiting = false;
            return polled;
        }
        if !turn.held() {
            return polled;
        }
        if !self.waiting {
            self.waiting = true;
            let at = tokio::time::Instant::now() + turn.turns.keep;
            match &mut self.clock {
                Some(clock) => clock.as_mut().reset(at),
                None => self.clock = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        if let Some(clock) = &mut self.clock
            && clock.as_mut().poll(cx).is_ready()
        {
            turn.give_up();
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The clock is tokio's paused one: waits below take no real time and never race.
    #[tokio::test(start_paused = true)]
    async fn a_read_waiting_longer_than_keep_gives_the_turn_away_and_it_is_taken_back() {
        let turns = Turns::new(1, Duration::from_millis(20), Counter::default());
        let turn = turns.next().await;
        assert_eq!(turns.free(), 0);
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = TurnIo::new(near, TurnWatch::new(Some(turn.clone())));
        let reader = tokio::spawn(async move {
            let mut b = [0u8; 4];
            io.read_exact(&mut b).await.unwrap();
            (io, b)
        });
        // Shorter than `keep`: the turn stays.
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(turns.free(), 0, "gave the turn away too soon");
        assert!(turn.held());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(turns.free(), 1, "kept the turn while waiting");
        assert!(!turn.held());
        far.write_all(b"next").await.unwrap();
        let (_io, b) = reader.await.unwrap();
        assert_eq!(&b, b"next");
        turn.take().await;
        assert_eq!(turns.free(), 0);
        // Taking a turn already held takes no second one.
        turn.take().await;
        drop(turn);
        assert_eq!(
            turns.free(),
            0,
            "the socket still holds the connection's claim"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_gives_its_turn_back_when_it_ends_and_the_next_waits_for_it() {
        let waits = Counter::default();
        let turns = Turns::new(1, Duration::from_secs(3600), waits.clone());
        let first = turns.next().await;
        assert_eq!(waits.get(), 0, "a free turn is no wait");
        let waiting = tokio::spawn({
            let turns = turns.clone();
            async move { turns.next().await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!waiting.is_finished(), "two turns out of one");
        drop(first);
        let second = waiting.await.unwrap();
        assert!(second.held());
        assert_eq!(waits.get(), 1);
        assert_eq!(turns.free(), 0);
        drop(second);
        assert_eq!(turns.free(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn without_turns_the_socket_only_passes_calls_through() {
        let (near, mut far) = tokio::io::duplex(64);
        let mut io = TurnIo::new(near, TurnWatch::new(None));
        far.write_all(b"ab").await.unwrap();
        let mut b = [0u8; 2];
        io.read_exact(&mut b).await.unwrap();
        io.write_all(b"cd").await.unwrap();
        far.read_exact(&mut b).await.unwrap();
        assert_eq!(&b, b"cd");
    }
}
