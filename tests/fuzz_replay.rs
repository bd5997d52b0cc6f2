//! The fuzz targets of `floyd::fuzzing` (run for real with cargo-fuzz in
//! `fuzz/`), replayed in CI: every input that once crashed a target
//! (`fuzz/regressions/<target>/`, committed), a local corpus in
//! `fuzz/corpus/<target>/` if there is one, valid inputs, and seeded random
//! and mutated ones (truncated frames, oversized length prefixes, random
//! protobuf).

use floyd::fuzzing;
use floyd::transport::{encode_frame, message_to_body};
use floyd::wire::frame::Body;
use rand::{Rng, SeedableRng};

/// Inputs for `target`: its corpus files, then `count` seeded random ones
/// and mutations of `seeds`.
fn inputs(target: &str, seeds: &[Vec<u8>], count: usize) -> Vec<Vec<u8>> {
    let fuzz = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut all: Vec<Vec<u8>> = ["regressions", "corpus"]
        .iter()
        .flat_map(|d| std::fs::read_dir(fuzz.join(d).join(target)).into_iter().flatten())
        .filter_map(|e| std::fs::read(e.ok()?.path()).ok())
        .collect();
    all.extend(seeds.iter().cloned());
    let mut rng = rand::rngs::SmallRng::seed_from_u64(0xf1077d);
    for i in 0..count {
        let mut v: Vec<u8> = if seeds.is_empty() || i % 2 == 0 {
            let len = rng.random_range(0..256);
            (0..len).map(|_| rng.random()).collect()
        } else {
            seeds[rng.random_range(0..seeds.len())].clone()
        };
        match rng.random_range(0..4) {
            0 if !v.is_empty() => v.truncate(rng.random_range(0..v.len())),
            1 if !v.is_empty() => {
                let at = rng.random_range(0..v.len());
                v[at] ^= 1 << rng.random_range(0..8);
            }
            2 => v.splice(0..0, rng.random::<u32>().to_be_bytes()).for_each(drop),
            _ => {}
        }
        all.push(v);
    }
    all
}

fn frames() -> Vec<Vec<u8>> {
    let msgs = [
        Body::RequestVote(Default::default()),
        Body::AppendEntries(floyd::wire::AppendEntries {
            term: 3,
            leader: "127.0.0.1:1".into(),
            entries: vec![Default::default(), Default::default()],
            ..Default::default()
        }),
        Body::AppendEntriesResponse(Default::default()),
        Body::TimeoutNow(Default::default()),
    ];
    msgs.iter()
        .enumerate()
        .map(|(i, b)| {
            let mut buf = Vec::new();
            // Groups 0 (no id on the wire), small and large.
            let group = [0, 7, u64::MAX][i % 3];
            encode_frame(group, b, &mut buf).unwrap();
            buf
        })
        .collect()
}

/// A length prefix and `payload`, as a frame.
fn framed(payload: &[u8]) -> Vec<u8> {
    [&(payload.len() as u32).to_be_bytes()[..], payload].concat()
}

/// The encoding of a body alone (no group id), and a group id field
/// (field 15, varint) in the bytes given.
fn body_and_group_field() -> (Vec<u8>, impl Fn(&[u8]) -> Vec<u8>) {
    let mut buf = Vec::new();
    encode_frame(0, &Body::TimeoutNow(Default::default()), &mut buf).unwrap();
    let body = buf[4..].to_vec();
    // Tag: field 15, wire type 0 (varint): 15 << 3 = 120.
    let field = |varint: &[u8]| [&[120u8][..], varint].concat();
    (body, field)
}

/// Frame.group_id as a peer might write it, not as floyd does: before the
/// body, twice (the last one counts, as protobuf says), as an overlong
/// varint, as another wire type, truncated. Each decodes to what protobuf
/// says or is refused; the decoder never panics, and the fuzz target
/// re-encodes each accepted frame to the same group and body.
fn group_id_frames() -> Vec<Vec<u8>> {
    let (body, field) = body_and_group_field();
    vec![
        framed(&[field(&[7]), body.clone()].concat()),
        framed(&[body.clone(), field(&[7]), field(&[9])].concat()),
        framed(&[body.clone(), field(&[0x87, 0x80, 0x80, 0])].concat()),
        framed(&[body.clone(), field(&[0xff; 9]), vec![1]].concat()),
        framed(&[body.clone(), vec![122, 1, 7]].concat()),
        framed(&[body.clone(), field(&[0x80])].concat()),
        framed(&[body.clone(), field(&[0xff; 11])].concat()),
    ]
}

#[test]
fn frame_group_ids_written_oddly_decode_as_protobuf_says_or_are_refused() {
    use floyd::transport::read_group_frame;
    let timeout_now = Body::TimeoutNow(Default::default());
    let read = |f: &Vec<u8>| read_group_frame(&mut &f[..], 1 << 16).map_err(|e| e.to_string());
    let frames = group_id_frames();
    assert_eq!(read(&frames[0]), Ok((7, timeout_now.clone())), "before the body");
    assert_eq!(
        read(&frames[1]),
        Ok((9, timeout_now.clone())),
        "the last one counts"
    );
    assert_eq!(
        read(&frames[2]),
        Ok((7, timeout_now.clone())),
        "an overlong varint"
    );
    assert_eq!(read(&frames[3]), Ok((u64::MAX, timeout_now)), "the largest");
    for (i, f) in frames.iter().enumerate().skip(4) {
        assert!(read(f).is_err(), "frame {i}: {:?}", read(f));
    }
    for f in &frames {
        fuzzing::frame(f);
    }
}

#[test]
fn the_frame_decoder_takes_garbage_truncated_and_oversized_frames() {
    let mut seeds = frames();
    seeds.push(u32::MAX.to_be_bytes().to_vec());
    seeds.push(frames().concat());
    seeds.extend(group_id_frames());
    for input in inputs("frame", &seeds, 20_000) {
        fuzzing::frame(&input);
    }
}

#[test]
fn the_core_refuses_or_survives_arbitrary_messages_after_validation() {
    // Structured inputs: op bytes, senders, fields (see fuzzing::rpc_step).
    let mut seeds: Vec<Vec<u8>> = (0..64u8).map(|b| vec![b; 64]).collect();
    let raw = frames();
    seeds.push([&[4u8, raw[1].len() as u8][..], &raw[1]].concat());
    assert!(message_to_body(floyd::core::Message::TimeoutNow(Default::default())).is_some());
    for input in inputs("rpc_step", &seeds, 5_000) {
        fuzzing::rpc_step(&input);
    }
}

#[test]
fn the_c_api_checks_every_argument() {
    let seeds: Vec<Vec<u8>> =
        vec![b"\x1f127.0.0.1:1,127.0.0.1:2\x09127.0.0.1\x04/tmp\x01\x00\x00\x00".to_vec()];
    for input in inputs("c_api_args", &seeds, 5_000) {
        fuzzing::c_api_args(&input);
    }
}

/// Committed entries of any bytes, marked or not: applied in one batch or
/// one by one, the same answers and the same state (fuzzing::apply).
#[test]
fn the_state_machine_applies_any_committed_bytes_alike_in_any_batches() {
    // Each input opens two stores: fewer inputs than the cheaper targets.
    for input in inputs("apply", &fuzzing::apply_seeds(), 300) {
        fuzzing::apply(&input);
    }
}
