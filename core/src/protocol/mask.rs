//! Frame masking (RFC 6455 §5.3), word at a time: masking is on every client byte.

use std::mem::MaybeUninit;

/// The key rotated to start `offset` bytes into the payload, alone and as a 64-bit word.
fn rotated_key(key: [u8; 4], offset: usize) -> ([u8; 4], u64) {
    let mut rotated = [0u8; 4];
    for (i, byte) in rotated.iter_mut().enumerate() {
        *byte = key[(offset + i) % 4];
    }
    let [a, b, c, d] = rotated;
    (rotated, u64::from_ne_bytes([a, b, c, d, a, b, c, d]))
}

/// XORs `buf` with `key`, as if `buf` started `offset` bytes into the masked payload.
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let (rotated, word) = rotated_key(key, offset);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let value = u64::from_ne_bytes(chunk.try_into().expect("chunk of 8")) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= rotated[i % 4];
    }
}

/// Writes `src` masked with `key` (as if `src` started `offset` bytes into the payload) into
/// `dst`, of the same length: copying and masking in one pass over the data, where a copy
/// and then [`apply_mask`] would take two. `dst` may be uninitialized.
pub fn mask_into(src: &[u8], dst: &mut [MaybeUninit<u8>], key: [u8; 4], offset: usize) {
    assert_eq!(src.len(), dst.len(), "mask_into needs equal lengths");
    let (rotated, word) = rotated_key(key, offset);
    let mut from = src.chunks_exact(8);
    let mut to = dst.chunks_exact_mut(8);
    for (input, output) in (&mut from).zip(&mut to) {
        let value = u64::from_ne_bytes(input.try_into().expect("chunk of 8")) ^ word;
        for (slot, byte) in output.iter_mut().zip(value.to_ne_bytes()) {
            slot.write(byte);
        }
    }
    let rest = from.remainder().iter().zip(to.into_remainder());
    for (i, (byte, slot)) in rest.enumerate() {
        slot.write(byte ^ rotated[i % 4]);
    }
}

/// Copies `src` into `dst`, of the same length, which may be uninitialized.
pub fn copy_into(src: &[u8], dst: &mut [MaybeUninit<u8>]) {
    assert_eq!(src.len(), dst.len(), "copy_into needs equal lengths");
    // SAFETY: both are valid for `src.len()` bytes and cannot overlap (`dst` is borrowed
    // mutably); MaybeUninit<u8> has the layout of u8.
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr().cast::<u8>(), src.len());
    }
}

/// Appends `src` to `out`, masked with `key` when there is one, in one pass.
pub fn extend_masked(out: &mut Vec<u8>, src: &[u8], key: Option<[u8; 4]>, offset: usize) {
    let Some(key) = key else {
        out.extend_from_slice(src);
        return;
    };
    out.reserve(src.len());
    let start = out.len();
    mask_into(src, &mut out.spare_capacity_mut()[..src.len()], key, offset);
    // SAFETY: mask_into initialized the `src.len()` bytes after the old length.
    unsafe { out.set_len(start + src.len()) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(buf: &mut [u8], key: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= key[(offset + i) % 4];
        }
    }

    #[test]
    fn rfc6455_5_3_matches_bytewise_masking_at_every_offset_and_length() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..40 {
            for offset in 0..4 {
                let data: Vec<u8> = (0..len as u8).collect();
                let mut fast = data.clone();
                let mut slow = data.clone();
                apply_mask(&mut fast, key, offset);
                naive(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn masking_into_another_buffer_matches_masking_in_place() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..40 {
            for offset in 0..4 {
                let data: Vec<u8> = (0..len as u8).collect();
                let mut expected = data.clone();
                naive(&mut expected, key, offset);
                let mut out = vec![0xEE];
                extend_masked(&mut out, &data, Some(key), offset);
                assert_eq!(out[1..], expected[..], "len {len} offset {offset}");
                let mut plain = vec![0xEE];
                extend_masked(&mut plain, &data, None, offset);
                assert_eq!(plain[1..], data[..]);
            }
        }
    }

    #[test]
    fn rfc6455_5_7_masked_hello() {
        let mut payload = *b"Hello";
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(payload, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }
}
