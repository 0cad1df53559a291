//! The native side of the asyncio face: the sans-IO protocol core and the handshake, driven
//! by `ferrows.asyncio` on the event-loop thread. No runtime and no other thread is involved:
//! a hop between threads per message costs more than a whole small round trip.

use std::mem::MaybeUninit;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use ferrows_core::metrics::{Pause, Refusal};
use ferrows_core::protocol::handshake::{
    self, accept_response, parse_request, validate_request, ClientHandshake, ClientOptions,
    HandshakeLimits, Response, ServerOptions,
};
use ferrows_core::protocol::message::{INITIAL_MESSAGE_BUFFER, MAX_SPARE_BUFFER};
use ferrows_core::protocol::uri::WsUri;
use ferrows_core::protocol::{
    recycle_message_buffer, Agreement, Connection, DeflateConfig, Event, MessageKind, Role,
};
use ferrows_core::{CloseFrame, Error};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PyMemoryView, PyTuple};

use crate::connection::{data_to_py, Outgoing};
use crate::convert::{headers_from, request_tuple, response_tuple, RequestTuple};
use crate::errors::to_py_err;
use crate::metrics::PyServerMetrics;
use crate::options::{deflate, protocol};

/// Event tags in the lists `ProtocolCore` returns (received data waits in the core's inbox).
const PING: u8 = 1;
const PONG: u8 = 2;
const CLOSED: u8 = 3;
/// `(OUTPUT, bytes)`: bytes the peer's frames made us send (pongs, close frames).
const OUTPUT: u8 = 4;
/// `(TIMER, seconds_or_None)`: the next timer moved; call `handle_timeout` then.
const TIMER: u8 = 5;

fn close_tuple(frame: &Option<CloseFrame>) -> Option<(u16, String)> {
    frame.as_ref().map(|f| (f.code, f.reason.clone()))
}

/// The permessage-deflate parameters a handshake agreed on, handed from the handshake to
/// `ProtocolCore`; `str()` gives them as the server answered them.
#[pyclass(module = "ferrows._ferrows", name = "DeflateAgreement", frozen)]
pub struct PyAgreement(Agreement);

#[pymethods]
impl PyAgreement {
    fn __str__(&self) -> String {
        self.0.to_header()
    }
}

/// Received data as a Python object; its buffer goes back to the core for the next large
/// messages (every connection of this thread's event loop shares its spares).
fn message_to_py(py: Python<'_>, kind: MessageKind, data: Vec<u8>) -> Bound<'_, PyAny> {
    let object = data_to_py(py, kind, &data);
    recycle_message_buffer(data);
    object
}

/// A new `bytes` object of `length` bytes, every one written by `write`. Unlike
/// `PyBytes::new_with`, the buffer is not zeroed first: for a large message that fill is a
/// pass over memory the kernel has just handed over, as costly as the write itself.
fn bytes_written_by<'py>(
    py: Python<'py>,
    length: usize,
    write: impl FnOnce(&mut [MaybeUninit<u8>]) -> PyResult<()>,
) -> PyResult<Bound<'py, PyBytes>> {
    let size = isize::try_from(length)
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("message too large"))?;
    // SAFETY: PyBytes_FromStringAndSize with a null pointer allocates `length` bytes to fill
    // before the object is shared; it is owned here and reaches Python only once `write` has
    // initialized every byte (on failure it is dropped unread).
    unsafe {
        let bytes = Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyBytes_FromStringAndSize(std::ptr::null(), size),
        )?
        .cast_into_unchecked::<PyBytes>();
        let buffer = pyo3::ffi::PyBytes_AsString(bytes.as_ptr()).cast::<MaybeUninit<u8>>();
        write(std::slice::from_raw_parts_mut(buffer, length))?;
        Ok(bytes)
    }
}

/// How much output `ProtocolCore.queue` lets wait for a batch's single write: enough for
/// many small messages, little enough to keep the transport's flow control in charge.
const BATCH_LIMIT: usize = 64 << 10;

/// The buffer of the last large frame sent, reused by the next one once the transport has
/// let go of it: one per event-loop thread, shared by its connections. A Python object (the
/// face keeps one in a `threading.local`), so that Python ends its life: a Rust thread-local
/// would drop it after the interpreter has finalized.
#[pyclass(module = "ferrows._ferrows", name = "SendBuffer", frozen)]
#[derive(Default)]
pub struct PySendBuffer(Mutex<Option<Py<PyByteArray>>>);

#[pymethods]
impl PySendBuffer {
    #[new]
    fn new() -> Self {
        Self::default()
    }
}

impl PySendBuffer {
    fn slot(&self) -> MutexGuard<'_, Option<Py<PyByteArray>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A frame of `length` bytes (at least [`INITIAL_MESSAGE_BUFFER`]), written by `write`, as a
/// memoryview over `reused`'s bytearray once nothing else refers to it (the transport wrote
/// it all, or finished writing it), else over a new one that `reused` keeps next. A new
/// object of a megabyte per message, freed soon after, is handed back to the kernel by the
/// allocator and faulted in again by the next message; one reused buffer per thread (at most
/// [`MAX_SPARE_BUFFER`]) is not.
fn large_frame<'py>(
    py: Python<'py>,
    reused: &PySendBuffer,
    length: usize,
    write: impl FnOnce(&mut [MaybeUninit<u8>]) -> PyResult<()>,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY (Py_REFCNT): a valid object; only the slot's reference, now taken, means no
    // memoryview or transport holds it, so it may be resized and overwritten.
    let reusable = reused
        .slot()
        .take()
        .filter(|buffer| unsafe { pyo3::ffi::Py_REFCNT(buffer.as_ptr()) } == 1);
    let buffer = match reusable {
        Some(buffer) => {
            let buffer = buffer.into_bound(py);
            buffer.resize(length)?;
            buffer
        }
        None => new_bytearray(py, length)?,
    };
    // SAFETY: `buffer` is `length` bytes long and no one else refers to it yet.
    let out =
        unsafe { std::slice::from_raw_parts_mut(buffer.data().cast::<MaybeUninit<u8>>(), length) };
    write(out)?;
    if length <= MAX_SPARE_BUFFER {
        *reused.slot() = Some(buffer.clone().unbind());
    }
    Ok(PyMemoryView::from(&buffer)?.into_any())
}

/// A bytearray of `length` bytes left unfilled, for the caller to write before sharing it.
fn new_bytearray(py: Python<'_>, length: usize) -> PyResult<Bound<'_, PyByteArray>> {
    let size = isize::try_from(length)
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("message too large"))?;
    // SAFETY: a null source allocates without copying; the new object is owned here.
    unsafe {
        Ok(Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PyByteArray_FromStringAndSize(std::ptr::null(), size),
        )?
        .cast_into_unchecked::<PyByteArray>())
    }
}

/// One connection's protocol state, driven from the event-loop thread (any thread may drop it).
#[pyclass(module = "ferrows._ferrows", name = "ProtocolCore")]
pub struct PyProtocolCore {
    inner: Connection,
    /// The deadline last reported to the driver, to report only changes.
    reported_deadline: Option<Instant>,
    /// The face hands every message to a listener as it arrives: a read that brought one
    /// whole message and nothing else returns it as itself.
    direct: bool,
    /// Set while the transport has paused writing: output stays here, where owed pongs stay
    /// bounded, and the event lists carry no `OUTPUT`; `poll` after clearing it returns what
    /// waited.
    #[pyo3(get, set)]
    hold_output: bool,
    /// The event-loop thread's reused buffer for large frames; None: a new one each time.
    send_buffer: Option<Py<PySendBuffer>>,
}

impl PyProtocolCore {
    /// The events produced so far, as `(tag, ...)` tuples: first `(OUTPUT, bytes)` if frames
    /// must be sent (the driver writes them before any callback can send more), then
    /// `(PING, payload)`, `(PONG, payload, acknowledged_ping_id_or_None, latency_or_None)`,
    /// `(CLOSED, rcvd, sent, rcvd_then_sent, cause_or_None)`, and `(TIMER,
    /// seconds_or_None)` if the next deadline moved.
    fn events<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let events = PyList::empty(py);
        // Taken after the events are polled, which may add frames (a close reply).
        let mut output = None;
        while let Some(event) = self.inner.poll_event() {
            let tuple: Bound<'py, PyTuple> = match event {
                Event::Ping(data) => (PING, PyBytes::new(py, &data)).into_pyobject(py)?,
                Event::Pong { data, acknowledged } => (
                    PONG,
                    PyBytes::new(py, &data),
                    acknowledged.map(|ack| ack.id),
                    acknowledged.map(|ack| ack.latency.as_secs_f64()),
                )
                    .into_pyobject(py)?,
                Event::Closed { info, error } => {
                    let cause = error.map(|e| to_py_err(py, e, None).into_value(py));
                    (
                        CLOSED,
                        close_tuple(&info.rcvd),
                        close_tuple(&info.sent),
                        info.rcvd_then_sent,
                        cause,
                    )
                        .into_pyobject(py)?
                }
            };
            events.append(tuple)?;
        }
        if self.output_due() {
            output = Some((OUTPUT, self.output(py)));
        }
        if let Some(output) = output {
            events.insert(0, output)?;
        }
        let deadline = self.inner.next_deadline();
        if deadline != self.reported_deadline {
            self.reported_deadline = deadline;
            let delay = deadline.map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64());
            events.append((TIMER, delay))?;
        }
        Ok(events)
    }

    /// After a read. When only data arrived (the common case): in direct mode a lone whole
    /// message as itself (str or bytes), else the inbox's charged size (an int, for the
    /// read limit). Anything else: the event list.
    fn received<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.inner.pending_events() > 0
            || self.output_due()
            || self.inner.next_deadline() != self.reported_deadline
        {
            return Ok(self.events(py)?.into_any());
        }
        let inbox = self.inner.inbox();
        // With input held for room, the face's data path takes the messages and the rest.
        if self.direct && inbox.len() == 1 && inbox.has_message() && !self.inner.holds_input() {
            if let Some((kind, data)) = self.inner.pop_message() {
                return Ok(message_to_py(py, kind, data));
            }
        }
        Ok(self
            .inner
            .inbox()
            .charged_bytes()
            .into_pyobject(py)?
            .into_any())
    }

    fn output<'py>(&mut self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.take_output())
    }

    /// The sans-IO connection, for functions that act on many at once.
    pub fn protocol_mut(&mut self) -> &mut Connection {
        &mut self.inner
    }

    fn output_due(&self) -> bool {
        self.inner.has_output() && !self.hold_output
    }

    fn closed_error(&self, py: Python<'_>, error: Error) -> PyErr {
        to_py_err(py, error, None)
    }
}

#[pymethods]
impl PyProtocolCore {
    /// A connection whose handshake is done. `options`: max_size, max_frame_size,
    /// max_fragments, close_timeout, ping_interval, ping_timeout (seconds; None or 0
    /// disables), compression, the same as the sync face's. `direct`: messages go to a
    /// listener as they arrive. `deflate`: what the handshake agreed on, if anything.
    /// `inbox_limit`: the read limit, above which input is held (see `holds_input`).
    /// `send_buffer`: the event-loop thread's `SendBuffer`, for large frames. `metrics`: the
    /// server's counters, for a connection it accepted (counted as accepted now).
    #[new]
    #[pyo3(signature = (
        is_client, options, direct=false, deflate=None, inbox_limit=None, send_buffer=None,
        metrics=None
    ))]
    fn new(
        is_client: bool,
        options: &Bound<'_, PyDict>,
        direct: bool,
        deflate: Option<PyRef<'_, PyAgreement>>,
        inbox_limit: Option<usize>,
        send_buffer: Option<Py<PySendBuffer>>,
        metrics: Option<PyRef<'_, PyServerMetrics>>,
    ) -> PyResult<Self> {
        let (role, default) = if is_client {
            (Role::Client, DeflateConfig::client())
        } else {
            (Role::Server, DeflateConfig::server())
        };
        let mut inner = Connection::new(role, protocol(options)?, Instant::now());
        if let Some(agreement) = deflate {
            let settings = self::deflate(options, default.clone())?.unwrap_or(default);
            inner.enable_deflate(agreement.0, &settings);
        }
        inner.set_inbox_limit(inbox_limit);
        if let Some(metrics) = metrics {
            inner.attach_metrics(metrics.0.clone());
        }
        Ok(Self {
            reported_deadline: None,
            inner,
            direct,
            hold_output: false,
            send_buffer,
        })
    }

    /// Takes the next whole message (str or bytes), or None if none has fully arrived: what
    /// has arrived of it stays for the next call. Raises ConcurrencyError while a message is
    /// partly taken with `next_chunk`.
    fn next_message<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let message = self
            .inner
            .next_message()
            .map_err(|e| to_py_err(py, e, None))?;
        Ok(message.map(|(kind, data)| message_to_py(py, kind, data)))
    }

    /// Takes the next chunk of received data as `(data, fin)`, or None.
    fn next_chunk<'py>(&mut self, py: Python<'py>) -> Option<(Bound<'py, PyAny>, bool)> {
        self.inner
            .pop_chunk()
            .map(|chunk| (message_to_py(py, chunk.kind, chunk.data), chunk.fin))
    }

    /// True when a whole message waits in the inbox for `next_message`.
    #[getter]
    fn has_message(&self) -> bool {
        self.inner.inbox().has_message()
    }

    /// How many pings were sent so far (keepalive's and `ping`'s).
    #[getter]
    fn pings_sent(&self) -> u64 {
        self.inner.pings_sent()
    }

    /// Counts a pause for lack of room in the server's metrics (reading: the face stopped
    /// reading; else the transport paused writing).
    fn record_pause(&self, reading: bool) {
        self.inner.record_pause(if reading {
            Pause::Reading
        } else {
            Pause::Writing
        });
    }

    /// True while input waits for room in the inbox (over `inbox_limit`): `receive(b"")`
    /// processes it once data was taken.
    #[getter]
    fn holds_input(&self) -> bool {
        self.inner.holds_input()
    }

    /// The permessage-deflate parameters agreed, as the server answered them; None without.
    #[getter]
    fn compression(&self) -> Option<String> {
        self.inner.deflate().map(|agreement| agreement.to_header())
    }

    /// Received, unconsumed data as charged against the read limit: bytes plus a fixed
    /// overhead per queued chunk.
    #[getter]
    fn inbox_bytes(&self) -> usize {
        self.inner.inbox().charged_bytes()
    }

    /// Feeds the first `length` bytes of `buffer` (the protocol's read buffer); returns a
    /// lone whole message as itself, anything else as the event list.
    fn receive_into<'py>(
        &mut self,
        py: Python<'py>,
        buffer: &Bound<'py, PyByteArray>,
        length: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: the bytearray is not resized or read by Python during this call; the
        // protocol copies what it keeps.
        let data = unsafe { buffer.as_bytes() };
        let length = length.min(data.len());
        self.inner.receive_data(&data[..length], Instant::now());
        self.received(py)
    }

    /// Feeds bytes (what arrived with the handshake); returns the events.
    fn receive<'py>(&mut self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyList>> {
        self.inner.receive_data(data, Instant::now());
        self.events(py)
    }

    /// The transport reached end of file; returns the events.
    fn receive_eof<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.inner.receive_eof();
        self.events(py)
    }

    /// The transport failed; returns the events.
    fn receive_error<'py>(
        &mut self,
        py: Python<'py>,
        message: String,
    ) -> PyResult<Bound<'py, PyList>> {
        self.inner
            .receive_transport_error(Error::Io(std::io::Error::other(message)));
        self.events(py)
    }

    /// Encodes a whole message (str: text, bytes: binary), compressed when permessage-deflate
    /// was negotiated unless `compress` is False; returns the bytes to write (a memoryview
    /// over the thread's reused send buffer for a large uncompressed frame).
    #[pyo3(signature = (message, compress=true))]
    fn send<'py>(
        &mut self,
        py: Python<'py>,
        message: Outgoing,
        compress: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (kind, data) = message.parts();
        if !self.inner.has_output() && !self.inner.compresses(data.len(), compress) {
            // Encoded straight into the object handed to the transport: one pass over the
            // data, no zero fill.
            let length = self.inner.message_frame_len(data.len());
            let inner = &mut self.inner;
            let encode = |out: &mut [MaybeUninit<u8>]| {
                inner
                    .encode_message_into(kind, data, out)
                    .map_err(|e| to_py_err(py, e, None))
            };
            return match &self.send_buffer {
                Some(reused) if length >= INITIAL_MESSAGE_BUFFER => {
                    large_frame(py, reused.get(), length, encode)
                }
                _ => Ok(bytes_written_by(py, length, encode)?.into_any()),
            };
        }
        self.inner
            .send_message_with(kind, data, compress)
            .map_err(|e| self.closed_error(py, e))?;
        Ok(self.output(py).into_any())
    }

    /// Encodes a whole message as `send` does, but leaves it in the core after whatever
    /// output waits there, for `take_output` to return it all in one write. Returns what to
    /// write now instead: a large frame with nothing before it (to be written from its own
    /// buffer: waiting would only add a copy), or everything once [`BATCH_LIMIT`] bytes wait.
    #[pyo3(signature = (message, compress=true))]
    fn queue<'py>(
        &mut self,
        py: Python<'py>,
        message: Outgoing,
        compress: bool,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let (kind, data) = message.parts();
        if data.len() >= INITIAL_MESSAGE_BUFFER && !self.inner.has_output() {
            return self.send(py, message, compress).map(Some);
        }
        self.inner
            .send_message_with(kind, data, compress)
            .map_err(|e| self.closed_error(py, e))?;
        if self.inner.output_len() >= BATCH_LIMIT {
            return Ok(self.take_output(py).map(Bound::into_any));
        }
        Ok(None)
    }

    /// The output waiting in the core (queued messages, and what precedes them), or None.
    /// Taken even while `hold_output` is set: the application's messages go to the
    /// transport, where its flow control and `write_buffer_size` see them, as they would
    /// without batching.
    fn take_output<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.inner.has_output().then(|| self.output(py))
    }

    /// Bytes waiting in the core to be written (queued messages, owed pongs).
    #[getter]
    fn output_size(&self) -> usize {
        self.inner.output_len()
    }

    /// Encodes one fragment (the first one's `compress` counts); returns the bytes to write.
    #[pyo3(signature = (message, fin, compress=true))]
    fn send_fragment<'py>(
        &mut self,
        py: Python<'py>,
        message: Outgoing,
        fin: bool,
        compress: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let (kind, data) = message.parts();
        self.inner
            .send_fragment_with(kind, data, fin, compress)
            .map_err(|e| self.closed_error(py, e))?;
        Ok(self.output(py))
    }

    /// Encodes a ping; returns `(ping_id, bytes_to_write)`. The PONG event that answers it
    /// (or a later ping) carries an id at least as large.
    fn ping<'py>(
        &mut self,
        py: Python<'py>,
        payload: &[u8],
    ) -> PyResult<(u64, Bound<'py, PyBytes>)> {
        let id = self
            .inner
            .send_ping(payload, Instant::now())
            .map_err(|e| self.closed_error(py, e))?;
        Ok((id, self.output(py)))
    }

    /// Encodes an unsolicited pong; returns the bytes to write.
    fn pong<'py>(&mut self, py: Python<'py>, payload: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
        self.inner
            .send_pong(payload)
            .map_err(|e| self.closed_error(py, e))?;
        Ok(self.output(py))
    }

    /// Starts the closing handshake; returns the bytes to write.
    fn close<'py>(
        &mut self,
        py: Python<'py>,
        code: u16,
        reason: &str,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.inner
            .close(code, reason, Instant::now())
            .map_err(|e| self.closed_error(py, e))?;
        Ok(self.output(py))
    }

    /// Runs the timers due now; returns the events.
    fn handle_timeout<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.inner.handle_timeout(Instant::now());
        // The driver's timer is spent: always report the next one, even if unchanged (a loop
        // timer may fire a little early, before anything is due).
        self.reported_deadline = None;
        self.events(py)
    }

    /// The events produced outside a read (after `close` or `ping`: a new timer).
    fn poll<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        self.events(py)
    }

    /// True once a close frame was sent or received.
    #[getter]
    fn is_closing(&self) -> bool {
        self.inner.state() != ferrows_core::protocol::State::Open
    }

    /// The latency of the last answered ping, in seconds (0.0 before any).
    #[getter]
    fn latency(&self) -> f64 {
        self.inner.latency().map_or(0.0, |l| l.as_secs_f64())
    }

    /// Records that a broadcast skipped (or closed) this connection for being slow.
    fn count_broadcast_skip(&mut self) {
        self.inner.count_broadcast_skip();
    }

    /// Broadcasts this connection missed for being slow (skipped, or closed by the policy).
    #[getter]
    fn broadcast_skips(&self) -> u64 {
        self.inner.broadcast_skips()
    }
}

/// A client's opening handshake in progress.
#[pyclass(module = "ferrows._ferrows", name = "ClientHandshake")]
pub struct PyClientHandshake {
    inner: ClientHandshake,
    uri: WsUri,
    response: Option<Response>,
}

/// Parses `uri` and prepares the handshake. `options`: origin, subprotocols,
/// additional_headers, user_agent.
#[pyfunction]
pub fn client_handshake(uri: &str, options: &Bound<'_, PyDict>) -> PyResult<PyClientHandshake> {
    let py = options.py();
    let uri = WsUri::parse(uri).map_err(|e| to_py_err(py, e, None))?;
    let get = |key: &str| -> PyResult<Option<Bound<'_, PyAny>>> {
        Ok(options.get_item(key)?.filter(|v| !v.is_none()))
    };
    let client_options = ClientOptions {
        deflate: deflate(options, DeflateConfig::client())?,
        origin: get("origin")?.map(|v| v.extract()).transpose()?,
        subprotocols: get("subprotocols")?
            .map(|v| v.extract())
            .transpose()?
            .unwrap_or_default(),
        extensions: Vec::new(),
        additional_headers: headers_from(
            get("additional_headers")?
                .map(|v| v.extract())
                .transpose()?,
        ),
        user_agent: get("user_agent")?.map(|v| v.extract()).transpose()?,
    };
    let inner = ClientHandshake::new(&uri, &client_options).map_err(|e| to_py_err(py, e, None))?;
    Ok(PyClientHandshake {
        inner,
        uri,
        response: None,
    })
}

#[pymethods]
impl PyClientHandshake {
    /// `(secure, host, port)` to connect to.
    fn address(&self) -> (bool, String, u16) {
        let (host, port) = self.uri.authority();
        (self.uri.secure, host, port)
    }

    /// The request bytes to send.
    fn request_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    /// The request as `(method, path, headers)`.
    fn request(&self) -> RequestTuple {
        request_tuple(self.inner.request())
    }

    /// Parses the response head from `buffer`: None until it is complete, then the number
    /// of bytes it took. Raises InvalidMessage on a malformed or oversized head.
    fn parse_response(&mut self, py: Python<'_>, buffer: &[u8]) -> PyResult<Option<usize>> {
        let parsed = ClientHandshake::parse_response(buffer, &HandshakeLimits::default())
            .map_err(|e| to_py_err(py, e, None))?;
        Ok(parsed.map(|(response, used)| {
            self.response = Some(response);
            used
        }))
    }

    /// How much body a refused response announces (bounded by the caller).
    fn body_length(&self) -> Option<usize> {
        self.response
            .as_ref()
            .and_then(ClientHandshake::body_length)
    }

    /// Validates the parsed response (with `body` for a refusal's report); returns the
    /// subprotocol and the permessage-deflate agreement (for `ProtocolCore`). Raises
    /// InvalidStatus, InvalidHeader or NegotiationError.
    fn validate(
        &mut self,
        py: Python<'_>,
        body: Vec<u8>,
    ) -> PyResult<(Option<String>, Option<PyAgreement>)> {
        let response = self
            .response
            .as_mut()
            .ok_or_else(|| pyo3::exceptions::PyRuntimeError::new_err("no response parsed"))?;
        response.body = body;
        self.inner
            .validate(response)
            .map(|accepted| (accepted.subprotocol, accepted.deflate.map(PyAgreement)))
            .map_err(|e| to_py_err(py, e, None))
    }

    /// The parsed response as `(status, reason, headers, body)`.
    fn response<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.response
            .as_ref()
            .map(|r| response_tuple(py, r))
            .transpose()
    }
}

/// Parses a request head from `buffer`: None until complete, else `(request, consumed)`.
/// Raises InvalidMessage on a malformed or oversized head.
#[pyfunction]
pub fn server_parse_request(
    py: Python<'_>,
    buffer: &[u8],
) -> PyResult<Option<(RequestTuple, usize)>> {
    let parsed =
        parse_request(buffer, &HandshakeLimits::default()).map_err(|e| to_py_err(py, e, None))?;
    Ok(parsed.map(|(request, used)| (request_tuple(&request), used)))
}

/// Validates an upgrade request. Returns `(key, offered_subprotocols, deflate_agreement)`,
/// or raises the handshake error with `.response` set to `(status, reason, headers, body)`
/// to send back. `options` holds `compression` as the connection options do. A refusal is
/// counted in `metrics` (the server's), if given.
#[pyfunction]
#[pyo3(signature = (method, path, headers, subprotocols, origins, options, metrics=None))]
#[allow(clippy::too_many_arguments)]
pub fn server_validate_request(
    py: Python<'_>,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    subprotocols: Vec<String>,
    origins: Option<Vec<Option<String>>>,
    options: &Bound<'_, PyDict>,
    metrics: Option<PyRef<'_, PyServerMetrics>>,
) -> PyResult<(String, Vec<String>, Option<PyAgreement>)> {
    let request = handshake::Request {
        method,
        path,
        headers: headers_from(Some(headers)),
    };
    let options = ServerOptions {
        subprotocols,
        origins,
        deflate: deflate(options, DeflateConfig::server())?,
    };
    match validate_request(&request, &options) {
        Ok(valid) => Ok((
            valid.key,
            valid.subprotocols,
            valid.deflate.map(PyAgreement),
        )),
        Err((error, response)) => {
            if let Some(metrics) = metrics {
                metrics.0.record_refused(Refusal::of(&error));
            }
            let err = to_py_err(py, error, None);
            err.value(py)
                .setattr("http_response", response_tuple(py, &response)?)?;
            Err(err)
        }
    }
}

/// The 101 response accepting `key` (with the permessage-deflate agreement, if any), as
/// bytes and as a tuple.
#[pyfunction]
#[pyo3(signature = (key, subprotocol, deflate, headers))]
pub fn server_accept_response<'py>(
    py: Python<'py>,
    key: &str,
    subprotocol: Option<&str>,
    deflate: Option<PyRef<'py, PyAgreement>>,
    headers: Vec<(String, String)>,
) -> (Bound<'py, PyBytes>, Bound<'py, PyAny>) {
    let extensions = deflate.map(|agreement| agreement.0.to_header());
    let response = accept_response(
        key,
        subprotocol,
        extensions.as_deref(),
        &headers_from(Some(headers)),
    );
    let tuple =
        response_tuple(py, &response).map_or_else(|_| py.None().into_bound(py), |t| t.into_any());
    (PyBytes::new(py, &response.to_bytes()), tuple)
}

/// Serializes an HTTP response (a process_request answer or a refusal).
#[pyfunction]
pub fn response_bytes<'py>(
    py: Python<'py>,
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> Bound<'py, PyBytes> {
    let response = Response {
        status,
        reason,
        headers: headers_from(Some(headers)),
        body,
    };
    PyBytes::new(py, &response.to_bytes())
}
