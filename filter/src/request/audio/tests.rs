use super::*;

/// A PCM WAV of `seconds` at `rate` Hz, 16-bit, `channels`.
fn wav_of(seconds: u32, rate: u32, channels: u16, declared: Option<u32>) -> Vec<u8> {
    let byte_rate = rate * u32::from(channels) * 2;
    let data = vec![0u8; (byte_rate * seconds) as usize];
    let mut b = b"RIFF".to_vec();
    b.extend((36 + data.len() as u32).to_le_bytes());
    b.extend(b"WAVE");
    // A chunk the reader skips (odd length, padded), then fmt and data.
    b.extend(b"LIST");
    b.extend(3u32.to_le_bytes());
    b.extend(b"abc\0");
    b.extend(b"fmt ");
    b.extend(16u32.to_le_bytes());
    b.extend(1u16.to_le_bytes());
    b.extend(channels.to_le_bytes());
    b.extend(rate.to_le_bytes());
    b.extend(byte_rate.to_le_bytes());
    b.extend((channels * 2).to_le_bytes());
    b.extend(16u16.to_le_bytes());
    b.extend(b"data");
    b.extend(declared.unwrap_or(data.len() as u32).to_le_bytes());
    b.extend(data);
    b
}

#[test]
fn a_wav_plays_its_data_over_its_byte_rate() {
    assert_eq!(duration_ms(&wav_of(3, 16_000, 1, None)), Some(3_000));
    assert_eq!(duration_ms(&wav_of(2, 44_100, 2, None)), Some(2_000));
    // A streamed WAV (no length) and one claiming more than it has: what is there.
    assert_eq!(duration_ms(&wav_of(2, 8_000, 1, Some(u32::MAX))), Some(2_000));
    assert_eq!(duration_ms(&wav_of(1, 8_000, 1, Some(1_000_000))), Some(1_000));
    // No fmt chunk before the data, or a zero rate: not read.
    let mut no_rate = wav_of(1, 8_000, 1, None);
    no_rate[40..44].copy_from_slice(&0u32.to_le_bytes());
    assert_eq!(duration_ms(&no_rate), None);
}

#[test]
fn a_header_claiming_a_rate_no_encoding_has_is_not_believed() {
    // 1 s of 16 kHz mono (32,000 bytes) claiming 100 MB a second: the
    // bytes at 1,536 kbit/s (166 ms), not 0.
    let mut b = wav_of(1, 16_000, 1, None);
    b[40..44].copy_from_slice(&100_000_000u32.to_le_bytes());
    assert_eq!(duration_ms(&b), Some(floor_ms(b.len())));
    assert!(floor_ms(b.len()) > 150);
}

#[test]
fn flac_plays_its_samples_over_its_rate() {
    let mut b = b"fLaC".to_vec();
    b.extend([0x80, 0, 0, 34]); // last block, STREAMINFO, 34 bytes
    let mut info = [0u8; 34];
    // 44,100 Hz (20 bits), stereo, 16-bit, 441,000 samples (36 bits): 10 s.
    let rate: u64 = 44_100;
    let samples: u64 = 441_000;
    let packed: u64 = rate << 44 | 1 << 41 | 15 << 36 | samples;
    info[10..18].copy_from_slice(&packed.to_be_bytes());
    b.extend(info);
    b.extend(vec![0u8; 1000]);
    assert_eq!(duration_ms(&b), Some(10_000));
    // An unknown total (0 samples) is not a length.
    b[8 + 14..8 + 18].copy_from_slice(&[0, 0, 0, 0]);
    b[8 + 13] &= 0xf0;
    assert_eq!(duration_ms(&b), None);
}

/// An MPEG-1 Layer III frame header: 128 kbit/s, 44.1 kHz, stereo.
const MP3_FRAME: [u8; 4] = [0xff, 0xfb, 0x90, 0x00];

#[test]
fn a_constant_rate_mp3_plays_its_bytes_over_its_bit_rate() {
    // An ID3v2 tag of 100 bytes, then 5 s at 128 kbit/s (80,000 bytes).
    let mut b = b"ID3\x04\x00\x00\x00\x00\x00\x64".to_vec();
    b.extend(vec![0u8; 100]);
    let frames = 80_000usize.div_ceil(417);
    for _ in 0..frames {
        b.extend(MP3_FRAME);
        b.extend(vec![0u8; 413]);
    }
    let expect = (frames * 417) as u64 * 8 / 128;
    assert_eq!(duration_ms(&b), Some(expect));
    assert!((4_990..=5_010).contains(&expect), "{expect}");
}

#[test]
fn a_variable_rate_mp3_plays_its_xing_frame_count() {
    // A Xing tag after the 32 bytes of MPEG-1 stereo side information:
    // 1,000 frames of 1,152 samples at 44.1 kHz = 26.122 s, whatever the bytes.
    let mut b = MP3_FRAME.to_vec();
    b.extend([0u8; 32]);
    b.extend(b"Xing");
    b.extend(1u32.to_be_bytes());
    b.extend(1000u32.to_be_bytes());
    b.extend(vec![0u8; 2000]);
    assert_eq!(duration_ms(&b), Some(26_122));
    // VBRI (Fraunhofer), 32 bytes after the header.
    let mut v = MP3_FRAME.to_vec();
    v.extend([0u8; 32]);
    v.extend(b"VBRI");
    v.extend([0u8; 10]);
    v.extend(500u32.to_be_bytes());
    v.extend(vec![0u8; 2000]);
    assert_eq!(duration_ms(&v), Some(13_061));
}

/// An Ogg page with `granule` and `packet`.
fn ogg_page(granule: i64, packet: &[u8]) -> Vec<u8> {
    let mut p = b"OggS\0\x02".to_vec();
    p.extend(granule.to_le_bytes());
    p.extend([0u8; 12]); // serial, sequence, checksum
    p.push(1);
    p.push(packet.len() as u8);
    p.extend(packet);
    p
}

#[test]
fn ogg_plays_its_last_granule_over_its_rate() {
    // Opus: 48 kHz, less the pre-skip (312); 7 s.
    let mut head = b"OpusHead\x01\x01".to_vec();
    head.extend(312u16.to_le_bytes());
    head.extend(16_000u32.to_le_bytes());
    let mut b = ogg_page(0, &head);
    b.extend(ogg_page(0, b"OpusTags"));
    b.extend(ogg_page(48_000 * 3, &[0u8; 100]));
    b.extend(ogg_page(48_000 * 7 + 312, &[0u8; 100]));
    // A last page ending no packet (-1) is passed over.
    b.extend(ogg_page(-1, &[0u8; 50]));
    assert_eq!(duration_ms(&b), Some(7_000));
    // Vorbis: its own rate.
    let mut id = b"\x01vorbis".to_vec();
    id.extend(0u32.to_le_bytes());
    id.push(1);
    id.extend(22_050u32.to_le_bytes());
    let mut v = ogg_page(0, &id);
    v.extend(ogg_page(22_050 * 4, &[0u8; 10]));
    assert_eq!(duration_ms(&v), Some(4_000));
}

fn mp4_box(t: &[u8; 4], content: &[u8]) -> Vec<u8> {
    let mut b = ((content.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend(t);
    b.extend(content);
    b
}

#[test]
fn mp4_plays_its_movie_header_duration() {
    // mvhd version 0: timescale 1,000, duration 61,500 (61.5 s); the
    // movie box after the media, as many encoders write it.
    let mut mvhd = vec![0u8; 4 + 8];
    mvhd.extend(1000u32.to_be_bytes());
    mvhd.extend(61_500u32.to_be_bytes());
    mvhd.extend(vec![0u8; 80]);
    let mut b = mp4_box(b"ftyp", b"M4A \0\0\0\0");
    b.extend(mp4_box(b"mdat", &[0u8; 5000]));
    b.extend(mp4_box(b"moov", &mp4_box(b"mvhd", &mvhd)));
    assert_eq!(duration_ms(&b), Some(61_500));
    // Version 1: 64-bit times; timescale 44,100.
    let mut v1 = vec![1u8, 0, 0, 0];
    v1.extend([0u8; 16]);
    v1.extend(44_100u32.to_be_bytes());
    v1.extend((44_100u64 * 90).to_be_bytes());
    let mut b = mp4_box(b"ftyp", b"isom\0\0\0\0");
    b.extend(mp4_box(b"moov", &mp4_box(b"mvhd", &v1)));
    assert_eq!(duration_ms(&b), Some(90_000));
}

/// An EBML element with a one-byte size.
fn ebml(id: &[u8], content: &[u8]) -> Vec<u8> {
    let mut b = id.to_vec();
    b.push(0x80 | content.len() as u8);
    b.extend(content);
    b
}

#[test]
fn webm_plays_its_duration_or_its_last_cluster() {
    let header = ebml(&[0x1a, 0x45, 0xdf, 0xa3], &ebml(&[0x42, 0x82], b"webm"));
    // Info: the default timecode scale (1 ms), Duration 12,345.0 as a float.
    let info = ebml(&[0x15, 0x49, 0xa9, 0x66], &ebml(&[0x44, 0x89], &12_345.0f64.to_be_bytes()));
    let mut b = header.clone();
    b.extend(ebml(&[0x18, 0x53, 0x80, 0x67], &info));
    assert_eq!(duration_ms(&b), Some(12_345));
    // A MediaRecorder file: no Duration, a segment and clusters of unknown
    // size; the last cluster starts at 9,000 ms.
    let info = ebml(&[0x15, 0x49, 0xa9, 0x66], &ebml(&[0x2a, 0xd7, 0xb1], &[0x0f, 0x42, 0x40]));
    let cluster = |t: u16| {
        let mut c = vec![0x1f, 0x43, 0xb6, 0x75, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        c.extend(ebml(&[0xe7], &t.to_be_bytes()));
        c.extend(ebml(&[0xa3], &[0x81, 0, 0, 0x80, 1, 2, 3]));
        c
    };
    let mut b = header;
    b.extend([0x18, 0x53, 0x80, 0x67, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    b.extend(info);
    for t in [0, 4_000, 9_000] {
        b.extend(cluster(t));
    }
    assert_eq!(duration_ms(&b), Some(9_000));
}

#[test]
fn what_states_no_length_is_assumed_at_32_kbits() {
    assert_eq!(duration_ms(b"not audio at all"), None);
    assert_eq!(duration_ms(&[]), None);
    // 25 MB, OpenAI's largest upload: about 104 minutes.
    assert_eq!(assumed_ms(25_000_000), 6_250_000);
}

#[test]
fn every_cut_of_a_file_is_read_without_panic() {
    let files = [wav_of(1, 8_000, 1, None), {
        let mut b = MP3_FRAME.to_vec();
        b.extend([0u8; 32]);
        b.extend(b"Xing");
        b
    }];
    for f in &files {
        for cut in 0..f.len().min(200) {
            let _ = duration_ms(&f[..cut]);
            let _ = streamed_ms(&f[..cut], &f[cut..], u64::MAX);
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(prefix in prop::sample::select(vec![&b"RIFF\0\0\0\0WAVE"[..], b"fLaC", b"OggS", b"\x1a\x45\xdf\xa3", b"\0\0\0\x10ftyp", b"ID3", b"\xff\xfb"]), rest in prop::collection::vec(any::<u8>(), 0..600), total in any::<u64>()) {
            let mut b = prefix.to_vec();
            b.extend(rest);
            let _ = super::duration_ms(&b);
            let _ = super::streamed_ms(&b, &b, total);
        }
    }
}

#[test]
fn a_stream_plays_its_bytes_at_its_first_headers_rate() {
    // An MP3 at 128 kbit/s: 160,000 bytes are 10 s, whatever of it was kept.
    let mut mp3 = MP3_FRAME.to_vec();
    mp3.resize(16 << 10, 0);
    assert_eq!(streamed_ms(&mp3, &[], 160_000), Some(10_000));
    // A streamed WAV names no length (0xFFFFFFFF): its bytes after the header are its data.
    let wav = wav_of(0, 24_000, 1, Some(u32::MAX));
    assert_eq!(streamed_ms(&wav, &[], wav.len() as u64 + 96_000), Some(2_000));
    // A head that is neither: not measured (the text's reading time stands in).
    // Ogg Opus: the first page's OpusHead, the last page's granule (48 kHz, less the pre-skip) in the tail.
    let mut head = ogg_page(0, b"OpusHead\x01\x01\x38\x01\xc0\x5d\0\0\0\0\0");
    head.extend(ogg_page(0, b"OpusTags"));
    let tail = ogg_page(312 + 7 * 48_000, &[0u8; 200]);
    assert_eq!(streamed_ms(&head, &tail, 56_000), Some(7_000));
    assert_eq!(streamed_ms(&head, &[], 56_000), None, "no page with a granule: not measured");
    assert_eq!(streamed_ms(b"OggS\0\0", &[], 1 << 20), None);
    assert_eq!(streamed_ms(&[], &[], 0), None);
}
