//! Frames, handshake, the RPC server and peer connections.
