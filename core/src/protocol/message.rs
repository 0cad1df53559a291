//! The message layer's inbox: data the peer sent and the application has not taken yet.
//!
//! Every face takes received data from here and nowhere else, as whole messages
//! ([`Inbox::pop_message`]) or as chunks in arrival order ([`Inbox::pop_chunk`]). It is
//! bounded by construction: each queued chunk is charged its payload plus a fixed
//! [`CHUNK_OVERHEAD`], so a peer cannot make us hold many items cheaply, and a fragment that
//! continues the chunk at the back of the queue joins it instead of becoming an item of its
//! own. A message being reassembled by a receiver that stopped waiting (a timeout, an
//! interrupt) stays here, so the next receive goes on where the last one stopped.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Mutex;

use super::connection::MessageKind;

/// A message announced at most this long gets a buffer of its announced size at once; a
/// longer one starts at this size and grows as its data arrives, so that a frame header
/// alone cannot make us allocate much.
pub const INITIAL_MESSAGE_BUFFER: usize = 64 << 10;

/// The largest buffer a thread keeps as a spare (see [`recycle_message_buffer`]).
pub const MAX_SPARE_BUFFER: usize = 4 << 20;

/// The smallest buffer a thread keeps as a spare, and the smallest message assembled in one:
/// below it an allocation costs little next to the message's own handling.
pub const MIN_SPARE_BUFFER: usize = 16 << 10;

/// What a thread's spares may hold together: the inbox of a connection reading large
/// messages fills to its read limit (4 MiB by default) before the application takes them,
/// so a burst of them is assembled in spares, not in memory the allocator has to fetch from
/// the kernel (and fault in page by page) again.
pub const MAX_SPARE_BYTES: usize = 2 * MAX_SPARE_BUFFER;

thread_local! {
    static SPARE_BUFFERS: RefCell<SpareBuffers> = const { RefCell::new(SpareBuffers::new()) };
}

/// Empty buffers a thread keeps for the next large messages it receives, at most
/// [`MAX_SPARE_BYTES`] of capacity together (hence at most `MAX_SPARE_BYTES /
/// MIN_SPARE_BUFFER` of them).
struct SpareBuffers {
    buffers: Vec<Vec<u8>>,
    bytes: usize,
}

impl SpareBuffers {
    const fn new() -> Self {
        Self {
            buffers: Vec::new(),
            bytes: 0,
        }
    }

    /// The smallest spare that holds `length` bytes; for a message above
    /// [`INITIAL_MESSAGE_BUFFER`], else the largest one above that (it grows from there).
    fn take(&mut self, length: u64) -> Option<Vec<u8>> {
        let capacities = self.buffers.iter().map(Vec::capacity).enumerate();
        let fitting = capacities
            .clone()
            .filter(|&(_, capacity)| capacity as u64 >= length)
            .min_by_key(|&(_, capacity)| capacity);
        let (index, _) = fitting.or_else(|| {
            capacities
                .filter(|&(_, capacity)| capacity > INITIAL_MESSAGE_BUFFER)
                .max_by_key(|&(_, capacity)| capacity)
                .filter(|_| length > INITIAL_MESSAGE_BUFFER as u64)
        })?;
        let buffer = self.buffers.swap_remove(index);
        self.bytes -= buffer.capacity();
        Some(buffer)
    }

    /// Keeps `buffer`, making room by dropping smaller spares; drops it if it is the
    /// smallest and there is no room.
    fn keep(&mut self, mut buffer: Vec<u8>) {
        let capacity = buffer.capacity();
        while self.bytes + capacity > MAX_SPARE_BYTES {
            let Some((index, smallest)) = self
                .buffers
                .iter()
                .enumerate()
                .min_by_key(|(_, buffer)| buffer.capacity())
                .filter(|(_, smallest)| smallest.capacity() < capacity)
            else {
                return;
            };
            self.bytes -= smallest.capacity();
            self.buffers.swap_remove(index);
        }
        buffer.clear();
        self.bytes += capacity;
        self.buffers.push(buffer);
    }
}

/// Spares of any thread, for drivers that assemble messages on one thread and copy them out
/// on another (the engine's reader task, and the application thread that receives), bounded
/// as a thread's own are.
static SHARED_SPARE_BUFFERS: Mutex<SpareBuffers> = Mutex::new(SpareBuffers::new());

fn with_shared_spares<T>(use_spares: impl FnOnce(&mut SpareBuffers) -> T) -> T {
    use_spares(
        &mut SHARED_SPARE_BUFFERS
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    )
}

/// The buffer a message whose first frame announces `length` bytes is assembled in: for a
/// large one, one of the calling thread's spares if one fits, else a shared one.
pub(crate) fn message_buffer(length: u64) -> Vec<u8> {
    let initial = length.min(INITIAL_MESSAGE_BUFFER as u64) as usize;
    if initial < MIN_SPARE_BUFFER {
        return Vec::with_capacity(initial);
    }
    SPARE_BUFFERS
        .with_borrow_mut(|spares| spares.take(length))
        .or_else(|| with_shared_spares(|spares| spares.take(length)))
        .unwrap_or_else(|| Vec::with_capacity(initial))
}

/// Whether a buffer is worth keeping as a spare: it held a message that a spare could have
/// served (one under [`MIN_SPARE_BUFFER`] never takes one, though its buffer may be larger:
/// an inflated message's grows from 16 KiB), and is not over [`MAX_SPARE_BUFFER`].
fn spare_sized(buffer: &Vec<u8>) -> bool {
    buffer.len() >= MIN_SPARE_BUFFER && buffer.capacity() <= MAX_SPARE_BUFFER
}

/// Hands back the buffer of a received message whose bytes the caller has copied out, for
/// the next large message received on this thread. A driver that copies every message into
/// objects of its own, on one thread (the asyncio face), then receives large messages
/// without allocating and freeing them each time: freed, such blocks go back to the kernel
/// (the allocator trims its heap) and the next message faults every page in again. A
/// thread keeps the buffers of messages of [`MIN_SPARE_BUFFER`] bytes or more, each of at
/// most [`MAX_SPARE_BUFFER`], [`MAX_SPARE_BYTES`] together, preferring large ones.
pub fn recycle_message_buffer(buffer: Vec<u8>) {
    if spare_sized(&buffer) {
        SPARE_BUFFERS.with_borrow_mut(|spares| spares.keep(buffer));
    }
}

/// Hands back the buffer of a received message whose bytes the caller has copied out, for
/// the next large message received on any thread: [`recycle_message_buffer`] for a driver
/// whose messages may be assembled on a thread other than the one that copies them out (the
/// sync face: a receiving thread reads the socket itself, or the reader task does). The
/// process keeps such spares within the bounds of one thread's.
pub fn recycle_shared_message_buffer(buffer: Vec<u8>) {
    if spare_sized(&buffer) {
        with_shared_spares(|spares| spares.keep(buffer));
    }
}

/// What a queued chunk costs beyond its payload: its place in the queue, the buffer's header
/// and the allocator's rounding. Charged so that empty or tiny chunks are not free.
pub const CHUNK_OVERHEAD: usize = 64;

/// A piece of a received message. Whole messages arrive as one chunk with `fin` set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Text or binary: the message's type, on every chunk of it.
    pub kind: MessageKind,
    /// The bytes; text chunks end on character boundaries.
    pub data: Vec<u8>,
    /// This chunk ends the message.
    pub fin: bool,
}

/// Received data waiting for the application, counted in bytes and items.
#[derive(Debug, Default)]
pub struct Inbox {
    chunks: VecDeque<Chunk>,
    /// Payload plus [`CHUNK_OVERHEAD`] for every queued chunk.
    charged: usize,
    /// Whole messages among the queued chunks (chunks with `fin`).
    complete: usize,
    /// The first part of a message a whole-message receiver has taken from the queue: it
    /// left the budget (it is bounded by the message size limit instead), so that a message
    /// larger than the budget can still be received.
    assembling: Option<Chunk>,
    /// Counts every chunk that arrived, so a driver can tell that something did.
    arrivals: u64,
    /// A message was partly taken as chunks: its rest must be taken as chunks too.
    mid_stream: bool,
}

impl Inbox {
    /// Queues received data. Data continuing the message at the back of the queue joins its
    /// chunk; an empty chunk that does not end a message is not queued at all.
    pub(crate) fn push(&mut self, kind: MessageKind, data: Vec<u8>, fin: bool) {
        if let Some(back) = self.chunks.back_mut().filter(|back| !back.fin) {
            self.charged += data.len();
            back.data.extend_from_slice(&data);
            back.fin = fin;
        } else if data.is_empty() && !fin {
            return;
        } else {
            self.charged += data.len() + CHUNK_OVERHEAD;
            self.chunks.push_back(Chunk { kind, data, fin });
        }
        if fin {
            self.complete += 1;
        }
        self.arrivals += 1;
    }

    /// Takes the next whole message, if all of it has arrived. Otherwise what has arrived of
    /// it is kept aside for the next call, outside the byte budget. None while a message is
    /// partly taken as chunks ([`Inbox::mid_stream`]): its rest is no message of its own.
    pub fn pop_message(&mut self) -> Option<(MessageKind, Vec<u8>)> {
        if self.mid_stream {
            return None;
        }
        while let Some(chunk) = self.take_front() {
            let whole = match self.assembling.take() {
                None => chunk,
                Some(mut first) => {
                    first.data.extend_from_slice(&chunk.data);
                    first.fin = chunk.fin;
                    first
                }
            };
            if whole.fin {
                return Some((whole.kind, whole.data));
            }
            self.assembling = Some(whole);
        }
        None
    }

    /// Takes the next chunk as it arrived (what a whole-message receiver kept aside first).
    pub fn pop_chunk(&mut self) -> Option<Chunk> {
        let chunk = self.assembling.take().or_else(|| self.take_front())?;
        self.mid_stream = !chunk.fin;
        Some(chunk)
    }

    /// True while a message is partly taken as chunks.
    pub fn mid_stream(&self) -> bool {
        self.mid_stream
    }

    fn take_front(&mut self) -> Option<Chunk> {
        let chunk = self.chunks.pop_front()?;
        self.charged -= chunk.data.len() + CHUNK_OVERHEAD;
        if chunk.fin {
            self.complete -= 1;
        }
        Some(chunk)
    }

    /// True when a whole message can be taken.
    pub fn has_message(&self) -> bool {
        self.complete > 0
    }

    /// True when a chunk can be taken.
    pub fn has_chunk(&self) -> bool {
        self.assembling.is_some() || !self.chunks.is_empty()
    }

    /// The budget the queued chunks use: payload plus a fixed overhead per chunk.
    pub fn charged_bytes(&self) -> usize {
        self.charged
    }

    /// Queued chunks.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// True when nothing is queued or kept aside.
    pub fn is_empty(&self) -> bool {
        !self.has_chunk()
    }

    /// Counts every arrival (a new chunk or more data for the last one).
    pub fn arrivals(&self) -> u64 {
        self.arrivals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: MessageKind = MessageKind::Text;

    #[test]
    fn the_buffer_of_a_message_too_small_for_a_spare_is_not_kept() {
        // An inflated 4 KiB message sits in a buffer grown to 16 KiB or more: a message that
        // size never takes a spare, so keeping its buffer would only pile them up.
        let capacity = std::thread::spawn(|| {
            let mut small = Vec::with_capacity(2 * MIN_SPARE_BUFFER);
            small.resize(MIN_SPARE_BUFFER / 4, 0u8);
            recycle_message_buffer(small);
            // Kept, the spare would serve this message whole; not kept, a buffer of the
            // message's own size comes.
            message_buffer(MIN_SPARE_BUFFER as u64).capacity()
        })
        .join()
        .unwrap();
        assert_eq!(
            capacity, MIN_SPARE_BUFFER,
            "a small message's buffer was kept as a spare"
        );
    }

    #[test]
    fn whole_messages_come_out_as_they_went_in_without_a_copy() {
        let mut inbox = Inbox::default();
        let data = b"hello".to_vec();
        let address = data.as_ptr();
        inbox.push(TEXT, data, true);
        assert_eq!(inbox.charged_bytes(), 5 + CHUNK_OVERHEAD);
        let (kind, data) = inbox.pop_message().unwrap();
        assert_eq!(
            (kind, data.as_slice(), data.as_ptr()),
            (TEXT, &b"hello"[..], address)
        );
        assert_eq!(inbox.charged_bytes(), 0);
        assert!(inbox.is_empty());
    }

    #[test]
    fn fragments_of_one_message_join_one_chunk() {
        let mut inbox = Inbox::default();
        for _ in 0..1000 {
            inbox.push(MessageKind::Binary, vec![7], false);
        }
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox.charged_bytes(), 1000 + CHUNK_OVERHEAD);
        assert!(!inbox.has_message());
        inbox.push(MessageKind::Binary, vec![8], true);
        assert!(inbox.has_message());
        let (_, data) = inbox.pop_message().unwrap();
        assert_eq!(data.len(), 1001);
    }

    #[test]
    fn empty_fragments_are_not_queued_but_empty_messages_are_charged() {
        let mut inbox = Inbox::default();
        for _ in 0..1000 {
            inbox.push(TEXT, Vec::new(), false);
        }
        assert_eq!((inbox.len(), inbox.charged_bytes()), (0, 0));
        for _ in 0..1000 {
            inbox.push(TEXT, Vec::new(), true);
        }
        assert_eq!(inbox.len(), 1000);
        assert_eq!(inbox.charged_bytes(), 1000 * CHUNK_OVERHEAD);
    }

    #[test]
    fn a_partly_received_message_is_kept_for_the_next_receive() {
        let mut inbox = Inbox::default();
        inbox.push(TEXT, b"first ".to_vec(), false);
        assert_eq!(inbox.pop_message(), None);
        // Kept aside, outside the budget, so reading can go on.
        assert_eq!(inbox.charged_bytes(), 0);
        assert!(inbox.has_chunk() && !inbox.has_message());
        inbox.push(TEXT, b"second ".to_vec(), false);
        assert_eq!(inbox.pop_message(), None);
        inbox.push(TEXT, b"last".to_vec(), true);
        inbox.push(TEXT, b"next".to_vec(), true);
        assert_eq!(
            inbox.pop_message(),
            Some((TEXT, b"first second last".to_vec()))
        );
        assert_eq!(inbox.pop_message(), Some((TEXT, b"next".to_vec())));
        assert_eq!(inbox.pop_message(), None);
    }

    #[test]
    fn chunks_hand_out_what_a_message_receiver_kept_aside_first() {
        let mut inbox = Inbox::default();
        inbox.push(TEXT, b"ab".to_vec(), false);
        assert_eq!(inbox.pop_message(), None);
        inbox.push(TEXT, b"cd".to_vec(), true);
        let first = inbox.pop_chunk().unwrap();
        assert_eq!((first.data.as_slice(), first.fin), (&b"ab"[..], false));
        let second = inbox.pop_chunk().unwrap();
        assert_eq!((second.data.as_slice(), second.fin), (&b"cd"[..], true));
        assert!(inbox.is_empty() && !inbox.has_message());
    }

    #[test]
    fn a_message_partly_taken_as_chunks_is_not_a_message() {
        let mut inbox = Inbox::default();
        inbox.push(TEXT, b"ab".to_vec(), false);
        assert_eq!(inbox.pop_chunk().map(|c| c.fin), Some(false));
        inbox.push(TEXT, b"cd".to_vec(), true);
        assert!(inbox.mid_stream());
        assert_eq!(inbox.pop_message(), None);
        assert_eq!(inbox.pop_chunk().map(|c| c.fin), Some(true));
        assert!(!inbox.mid_stream());
    }

    #[test]
    fn arrivals_count_every_push_that_queued_data() {
        let mut inbox = Inbox::default();
        inbox.push(TEXT, Vec::new(), false);
        assert_eq!(inbox.arrivals(), 0);
        inbox.push(TEXT, b"a".to_vec(), false);
        inbox.push(TEXT, b"b".to_vec(), true);
        assert_eq!(inbox.arrivals(), 2);
    }
}
