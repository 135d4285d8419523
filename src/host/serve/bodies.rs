//! Replies and their bodies: bytes in memory, or a file (or another body made piece by piece:
//! [`Pieces`]) read a piece at a time as hyper asks for the next one (never ahead of the client).

use super::*;

/// A response to send.
pub(super) struct Reply {
    pub(super) status: u16,
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) body: Body,
}

pub(super) enum Body {
    /// No body at all (204, 304): no Content-Length either.
    None,
    Bytes(Vec<u8>),
    /// `len` bytes of a file from `offset`.
    File(Box<dyn ReadSeek>, u64, u64),
    /// A body of unknown length made a piece at a time (sent chunked).
    Pieces(Box<dyn Pieces>),
}

/// A body made a piece at a time, on the blocking pool, each piece when hyper asks for it.
pub(super) trait Pieces: Send {
    /// The next piece (about a [`CHUNK`]); `None` at the end. An error breaks the framing:
    /// the connection is closed.
    fn next_piece(&mut self) -> io::Result<Option<Vec<u8>>>;
}

impl Reply {
    pub(super) fn text(status: u16, text: &str) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type", "text/plain; charset=utf-8".into())],
            body: Body::Bytes(text.as_bytes().to_vec()),
        }
    }

    pub(super) fn header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    pub(super) fn len(&self) -> Option<u64> {
        match &self.body {
            Body::None => None,
            Body::Bytes(b) => Some(b.len() as u64),
            Body::File(_, _, len) => Some(*len),
            Body::Pieces(_) => None,
        }
    }

    /// The hyper response: headers, and the body unless `head_only` (its Content-Length is
    /// kept). A file must already be positioned at its range's start. `in_flight` marks the
    /// request as in progress until the body is done.
    pub(super) fn into_response(
        self,
        head_only: bool,
        log: Option<LogLine>,
        in_flight: Option<InFlight>,
    ) -> Response<Outgoing> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let len = self.len();
        let data = match self.body {
            _ if head_only => Data::Empty,
            Body::None => Data::Empty,
            Body::Bytes(b) if b.is_empty() => Data::Empty,
            Body::Bytes(b) => Data::Bytes(Bytes::from(b)),
            Body::File(_, _, 0) => Data::Empty,
            Body::File(f, _, len) => Data::File {
                left: len,
                file: Some(f),
                reading: None,
            },
            Body::Pieces(p) => Data::Pieces {
                pieces: Some(p),
                making: None,
            },
        };
        let mut response = Response::new(Outgoing {
            data,
            sent: 0,
            error: None,
            _in_flight: in_flight,
            log: log.map(|l| LogLine {
                status: self.status,
                ..l
            }),
        });
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert("Server", HeaderValue::from_static("nar-tool"));
        // Never taken for something it is not (a script, a page); no Referer sent onwards.
        headers.insert(
            "X-Content-Type-Options",
            HeaderValue::from_static("nosniff"),
        );
        headers.insert("Referrer-Policy", HeaderValue::from_static("no-referrer"));
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::try_from(value),
            ) {
                headers.append(name, value);
            }
        }
        if let Some(len) = len {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        response
    }
}

/// A request's log line, printed when its response is done (or abandoned).
pub(super) struct LogLine {
    pub(super) remote: Peer,
    /// `METHOD target`
    pub(super) request: String,
    pub(super) status: u16,
}

/// A response body: bytes in memory, or a range of a file read [`CHUNK`] by [`CHUNK`] on the
/// blocking pool when hyper asks for the next piece, which it does only once what it holds for
/// the client is below its buffer limit: constant memory, one piece for a client that does not
/// read, and a client that reads slowly slows only the reads for its own response.
pub(super) struct Outgoing {
    pub(super) data: Data,
    pub(super) sent: u64,
    pub(super) error: Option<String>,
    pub(super) log: Option<LogLine>,
    pub(super) _in_flight: Option<InFlight>,
}

pub(super) enum Data {
    Empty,
    Bytes(Bytes),
    /// `left` bytes of a file still to send: the file, or (while hyper waits for the next piece)
    /// the read of that piece, which gives the file back.
    File {
        left: u64,
        file: Option<Box<dyn ReadSeek>>,
        reading: Option<PieceRead>,
    },
    /// A body made piece by piece: its maker, or (while hyper waits) the making of the next piece.
    Pieces {
        pieces: Option<Box<dyn Pieces>>,
        making: Option<PieceMade>,
    },
}

/// The next piece of a [`Pieces`] body being made, and its maker back.
pub(super) type PieceMade = JoinHandle<(Box<dyn Pieces>, io::Result<Option<Vec<u8>>>)>;

/// The next piece of a body being read, and the stream to read the rest from.
pub(super) type PieceRead = JoinHandle<io::Result<(Box<dyn ReadSeek>, Vec<u8>)>>;

/// Reads the next piece of the `left` bytes to send from `file` (positioned at the first).
pub(super) fn read_piece(mut file: Box<dyn ReadSeek>, left: u64) -> PieceRead {
    tokio::task::spawn_blocking(move || {
        let piece = read_exactly(&mut file, left.min(CHUNK as u64))?;
        Ok((file, piece))
    })
}

/// The next `n` bytes of `file` (at most a [`CHUNK`]), all of them or an error.
pub(super) fn read_exactly(file: &mut dyn ReadSeek, n: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(n as usize);
    file.take(n).read_to_end(&mut bytes)?;
    if (bytes.len() as u64) < n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the file shrank while being read",
        ));
    }
    Ok(bytes)
}

impl hyper::body::Body for Outgoing {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let chunk = match &mut this.data {
            Data::Empty => return Poll::Ready(None),
            Data::Pieces { pieces, making } => {
                if let Some(mut p) = pieces.take() {
                    *making = Some(tokio::task::spawn_blocking(move || {
                        let piece = p.next_piece();
                        (p, piece)
                    }));
                }
                let made = match making.as_mut().map(|m| Pin::new(m).poll(cx)) {
                    Some(Poll::Pending) => return Poll::Pending,
                    Some(Poll::Ready(Ok((back, made)))) => {
                        *pieces = Some(back);
                        made
                    }
                    Some(Poll::Ready(Err(e))) => Err(io::Error::other(e)),
                    None => Err(io::Error::other("the body's maker was lost")),
                };
                *making = None;
                match made {
                    Ok(Some(piece)) => {
                        this.sent += piece.len() as u64;
                        return Poll::Ready(Some(Ok(Frame::data(Bytes::from(piece)))));
                    }
                    Ok(None) => {
                        this.data = Data::Empty;
                        return Poll::Ready(None);
                    }
                    Err(e) => {
                        this.data = Data::Empty;
                        this.error = Some(e.to_string());
                        return Poll::Ready(Some(Err(e)));
                    }
                }
            }
            Data::Bytes(b) => std::mem::take(b),
            Data::File {
                left,
                file,
                reading,
            } => {
                if let Some(f) = file.take() {
                    *reading = Some(read_piece(f, *left));
                }
                let read = match reading.as_mut().map(|r| Pin::new(r).poll(cx)) {
                    Some(Poll::Pending) => return Poll::Pending,
                    Some(Poll::Ready(joined)) => {
                        *reading = None;
                        joined.unwrap_or_else(|e| Err(io::Error::other(e)))
                    }
                    None => Err(io::Error::other("the body's file was lost")),
                };
                let (back, piece) = match read {
                    Ok(read) => read,
                    Err(e) => {
                        // The framing is broken: hyper closes the connection.
                        this.data = Data::Empty;
                        this.error = Some(e.to_string());
                        return Poll::Ready(Some(Err(e)));
                    }
                };
                *left -= piece.len() as u64;
                let chunk = Bytes::from(piece);
                if *left > 0 {
                    *file = Some(back);
                    this.sent += chunk.len() as u64;
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                chunk
            }
        };
        this.data = Data::Empty;
        this.sent += chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.data, Data::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(match &self.data {
            Data::Empty => 0,
            Data::Bytes(b) => b.len() as u64,
            Data::File { left, .. } => *left,
            Data::Pieces { .. } => return SizeHint::default(),
        })
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        let Some(log) = &self.log else { return };
        let LogLine {
            remote,
            request,
            status,
        } = log;
        match (&self.error, &self.data) {
            (Some(e), _) => eprintln!("{remote} \"{request}\" {status} error: {e}"),
            (None, Data::Empty) => eprintln!("{remote} \"{request}\" {status} {}", self.sent),
            (None, _) => eprintln!(
                "{remote} \"{request}\" {status} error: connection closed after {} bytes",
                self.sent
            ),
        }
    }
}
