//! Known-answer tests: our CIDs and piece CIDs against published fixtures.
//!
//! Sources, per test:
//! - kubo `test/sharness/t0040-add-and-cat.sh`: CIDs `ipfs add` prints for
//!   small files and directories (planets, moons, `add -r .`), the empty
//!   file and `--cid-version=1` / `--raw-leaves` variants; and
//!   `t0044-add-symlink.sh` for symlinks.
//! - The JS reference importer (`ipfs-unixfs-importer` 17.1.1 +
//!   `blockstore-core`), for sizes kubo publishes no vector for; it was first
//!   checked against the kubo t0040 vectors above. See `tests/vectors/README.md`
//!   for the script and exact options.
//! - go-fil-commp-hashhash `testdata/zero.txt` and `testdata/0xCC.txt`
//!   (generated with Lotus `ClientCalcCommP`), and go-fil-commcid
//!   `commcid_test.go` ("127OfEach0-1-2-3"), for piece CIDs; and
//!   `@web3-storage/data-segment` 5.3.0 for pseudo-random payloads.

mod common;

use std::fs;
use std::io;
use std::path::Path;

use common::{K, reference_tree, write_tree, xorshift};

use shoal_publishers::content::{
    ImportOptions, NullSink, Profile, import_path, import_reader, piece_cid,
};

fn cid_of_bytes(bytes: &[u8], options: impl Into<ImportOptions>) -> String {
    match import_reader(bytes, options, &mut NullSink) {
        Ok(imported) => imported.cid.to_string(),
        Err(e) => format!("error: {e}"),
    }
}

fn cid_of_path(path: &Path, profile: Profile) -> String {
    match import_path(path, profile) {
        Ok(cid) => cid.to_string(),
        Err(e) => format!("error: {e}"),
    }
}

#[test]
fn files_match_kubo_default_profile() -> io::Result<()> {
    // (name, size, CIDv0 from the JS reference importer with kubo's defaults)
    let cases = [
        ("empty", 0, "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"), // also kubo sharness
        (
            "1 byte",
            1,
            "QmdeoacqroE1mWhJSYwXtEHfzZQ2AbKXadXxA6E261BSJS",
        ),
        (
            "one chunk",
            K,
            "QmfXFVG4gxJQtdf6XfyUZwzt3Gj5ufgD82ZtE5Jd8uoopu",
        ),
        (
            "one chunk + 1",
            K + 1,
            "QmZTA68MJJAkCrBW1fjgB8MvRZoPvCPVcSmbUNaQELcKwN",
        ),
        (
            "174 chunks",
            174 * K,
            "QmcfZW1WGxc8pfYmfnc4LEJZQhbrerCLNLsb7eL32tEAVv",
        ),
        (
            "174 chunks + 1 (second level)",
            174 * K + 1,
            "Qmdq9qUifNsbT2bNnMaKfmZQVbKFy9nqok5mLouebZJNHz",
        ),
    ];
    let data = xorshift(174 * K + 1);
    let dir = tempfile::tempdir()?;
    for (name, len, expected) in cases {
        assert_eq!(
            cid_of_bytes(&data[..len], Profile::V0Default),
            expected,
            "{name}"
        );
        // The same through a real file on disk.
        let path = dir.path().join("f");
        fs::write(&path, &data[..len])?;
        assert_eq!(
            cid_of_path(&path, Profile::V0Default),
            expected,
            "{name} from disk"
        );
    }
    Ok(())
}

#[test]
fn files_match_kubo_cid_version_1() {
    // `ipfs add --cid-version=1` (raw leaves), from the JS reference importer.
    let cases = [
        (
            "empty",
            0,
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        ), // also kubo sharness
        (
            "1 byte",
            1,
            "bafkreidivixc5zo77fxdgvpgy7xdopr5njhbp527sumnqq3qtqgjxq7d2q",
        ),
        (
            "one chunk",
            K,
            "bafkreiciwyoo67zx7fjj2q6n4536p6tvvjkpibemtyii6kxym6fwhm3db4",
        ),
        (
            "one chunk + 1",
            K + 1,
            "bafybeie5ip7zyjyvkduxltxkq3arr4e3smevmagncogq6e63uawdae3tou",
        ),
        (
            "174 chunks",
            174 * K,
            "bafybeic6iih72wctc4l4wezgxmjz3r4thrjqtw6d7xoqavnmi242ydbb3e",
        ),
        (
            "174 chunks + 1",
            174 * K + 1,
            "bafybeieqylbqrvxzlfo3jn2x4puqmpxek647ggyngyv5nt5n5xbkmd7bim",
        ),
    ];
    let data = xorshift(174 * K + 1);
    for (name, len, expected) in cases {
        assert_eq!(
            cid_of_bytes(&data[..len], Profile::V1RawLeaves),
            expected,
            "{name}"
        );
    }
}

#[test]
fn balanced_layout_matches_reference_at_three_and_four_levels() {
    // 1 KiB chunks and 4 links per node reach four levels in 70 KB: the
    // same layout code as kubo's defaults, exercised deeper. JS reference
    // importer with fixedSize(1024) and balanced({ maxChildrenPerNode: 4 }).
    let v0 = [
        (0, "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"),
        (1, "QmdeoacqroE1mWhJSYwXtEHfzZQ2AbKXadXxA6E261BSJS"),
        (1024, "QmNaYQdnBLVvBtqVJxBymAZLgV64SPLnHSUS5gSrDAGSwE"),
        (1025, "QmcWU7HhAEM5HdYe8QwYJY2dhFMVxPuEDFccgN9KgxkNvB"),
        (4096, "QmPQoQRgSWXmHRiALwQGuWUuMvkDJnUA22JTtMJeEnUe3T"),
        (4097, "QmcCWjXWk37h1ggJXY8dRd6fjnU7hbKAgk9W5g2TEaMGu8"),
        (16384, "QmZUNYU7e9CjrirFJuz64BC8oBCoc4C9FAjL7Wt6PeHASR"),
        (16385, "QmYqgB5X5yKVN1eHUwnmtjy7trJ7nkJQdLz9DiQMLxgtuz"),
        (65536, "QmSxgoEapx2z46F3KfyJo5zJhBdonb8zG9gaoaSpkLug7Y"),
        (65537, "QmaDs1Fk9R47rdvMSPzTbYWGNVSJg88hrK3zko1TDH5E9j"),
        (70000, "Qmc5KztLW5XrsuV7kiTA5kfNKqcEH7DecWu2uHQcgE7Lun"),
    ];
    let v1 = [
        (
            0,
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
        ),
        (
            1,
            "bafkreidivixc5zo77fxdgvpgy7xdopr5njhbp527sumnqq3qtqgjxq7d2q",
        ),
        (
            1024,
            "bafkreibrny5k7ekcuunlembbf3gznzy3j7zd5ip5hu7fn5b3nkdvtmcnbq",
        ),
        (
            1025,
            "bafybeia7dbwljbd7gfsfob2qvbl6gpxgd574gn5vbbuffynurmty6edhbi",
        ),
        (
            4096,
            "bafybeigai6yvcjis7tqcfgrnotlyc6pgzdbtdscpr7apamm6uqugme2ggi",
        ),
        (
            4097,
            "bafybeiesgikeniog3rfklqlgj6wfid3joadqxlakn77wrz2siiddob2g44",
        ),
        (
            16384,
            "bafybeigpppaljqrcpn3rv6qsjkapcjjjqhyqtnexc2dhz44aqq3bo7gkam",
        ),
        (
            16385,
            "bafybeign6ppcviplwk6l6lziidvy2d7hyn4vthptbn2zqg5f3rr4xtfkcq",
        ),
        (
            65536,
            "bafybeib36garhom7bszuda7mpbrz7cbka3luq5nqpqhk4fbr6ibjaelvmu",
        ),
        (
            65537,
            "bafybeig7qmovv5u3huh5qtkegjbcqq7hql4avq4mr6pbrz4ynpvrlhqp7y",
        ),
        (
            70000,
            "bafybeigo4an34hgug2on7hz44hirjg6hbx3ref2fmcp5powahmhzas5xbi",
        ),
    ];
    let data = xorshift(70_000);
    for (profile, cases) in [(Profile::V0Default, v0), (Profile::V1RawLeaves, v1)] {
        let options = ImportOptions {
            chunk_size: 1024,
            max_links: 4,
            ..profile.options()
        };
        for (len, expected) in cases {
            assert_eq!(
                cid_of_bytes(&data[..len], options),
                expected,
                "{profile:?} {len} bytes"
            );
        }
    }
}

/// 174 * 174 * 256 KiB + 1 bytes of zeros (7.9 GB): three levels at kubo's
/// defaults, streamed (nothing near that size is held in memory). JS
/// reference importer. Hashes 2 x 7.9 GB: about 11 s with SHA-NI.
#[test]
fn large_zero_file_three_levels_matches_reference() {
    let len = (174 * 174 * K + 1) as u64;
    let zeros = || io::Read::take(io::repeat(0), len);
    let v0 = import_reader(zeros(), Profile::V0Default, &mut NullSink).map(|i| i.cid.to_string());
    assert_eq!(
        v0.ok().as_deref(),
        Some("QmVZLgevKqdMBkEdFhcauLccqzLNn2gmfwVaXhHEZJyqzm")
    );
    let v1 = import_reader(zeros(), Profile::V1RawLeaves, &mut NullSink).map(|i| i.cid.to_string());
    assert_eq!(
        v1.ok().as_deref(),
        Some("bafybeic3bmw3lls6npgpysoz7577inmexlh7ulmlepk4qypu72heonqfhu")
    );
}

#[test]
fn directories_match_kubo_sharness() -> io::Result<()> {
    // kubo t0040: `ipfs add -r mountdir/planets` with and without --cid-version=1.
    let planets = tempfile::tempdir()?;
    write_tree(
        planets.path(),
        &[
            ("mars.txt", b"Hello Mars!\n"),
            ("venus.txt", b"Hello Venus!\n"),
        ],
        &[],
    )?;
    assert_eq!(
        cid_of_path(planets.path(), Profile::V0Default),
        "QmWSgS32xQEcXMeqd3YPJLrNBLSdsfYCep2U7CFkyrjXwY"
    );
    assert_eq!(
        cid_of_path(planets.path(), Profile::V1RawLeaves),
        "bafybeih7e5dmkyk25up5vxug4q3hrg2fxbzf23dfrac2fns5h7z4aa7ioi"
    );

    // kubo t0040: `ipfs add -rn mountdir/moons` (nested directories).
    let moons = tempfile::tempdir()?;
    write_tree(
        moons.path(),
        &[
            ("jupiter/europa.txt", b"Hello Europa!\n"),
            ("saturn/titan.txt", b"Hello Titan!\n"),
            ("mercury.txt", b"hey youre no moon!\n"),
        ],
        &[],
    )?;
    assert_eq!(
        cid_of_path(moons.path(), Profile::V0Default),
        "QmVKvomp91nMih5j6hYBA8KjbiaYvEetU2Q7KvtZkLe9nQ"
    );
    assert_eq!(
        cid_of_path(&moons.path().join("jupiter"), Profile::V0Default),
        "QmS5mZddhFPLWFX3w6FzAy9QxyYkaxvUpsWCtZ3r7jub9J"
    );
    assert_eq!(
        cid_of_path(&moons.path().join("saturn/titan.txt"), Profile::V0Default),
        "QmZzppb9WHn552rmRqpPfgU5FEiHH6gDwi3MrB9cTdPwdb"
    );

    // kubo t0040: `ipfs add -r .` of test_current_dir.
    let current = tempfile::tempdir()?;
    write_tree(
        current.path(),
        &[("hey", b"Hey\n"), ("hello/world", b"World\n")],
        &[],
    )?;
    assert_eq!(
        cid_of_path(current.path(), Profile::V0Default),
        "QmZQWnfcqJ6hNkkPvrY9Q5X39GP3jUnUbAV4AbmbbR3Cb1"
    );

    // The empty directory (kubo's well-known QmUNLLs...; v1 from the JS reference).
    let empty = tempfile::tempdir()?;
    assert_eq!(
        cid_of_path(empty.path(), Profile::V0Default),
        "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
    );
    assert_eq!(
        cid_of_path(empty.path(), Profile::V1RawLeaves),
        "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354"
    );
    Ok(())
}

#[test]
fn symlinks_are_added_as_links_like_kubo() -> io::Result<()> {
    // kubo test/sharness/t0044-add-symlink.sh: a tree with a good and a
    // dangling symlink, and each symlink added on its own.
    let dir = tempfile::tempdir()?;
    let files = dir.path().join("files");
    write_tree(&files, &[("foo/baz", b"some text\n")], &["bar"])?;
    std::os::unix::fs::symlink("files/foo/baz", files.join("bar/baz"))?;
    std::os::unix::fs::symlink("files/does/not/exist", files.join("bad"))?;
    assert_eq!(
        cid_of_path(&files, Profile::V0Default),
        "QmWdiHKoeSW8G1u7ATCgpx4yMoUhYaJBQGkyPLkS9goYZ8"
    );
    assert_eq!(
        cid_of_path(&files.join("bar/baz"), Profile::V0Default),
        "QmdocmZeF7qwPT9Z8SiVhMSyKA2KKoA2J7jToW6z6WBmxR"
    );
    assert_eq!(
        cid_of_path(&files.join("bad"), Profile::V0Default),
        "QmWYN8SEXCgNT2PSjB6BnxAx6NJQtazWoBkTRH9GRfPFFQ"
    );
    Ok(())
}

#[test]
fn nested_tree_with_empty_file_and_directory_matches_reference() -> io::Result<()> {
    let dir = tempfile::tempdir()?;
    reference_tree(dir.path())?;
    assert_eq!(
        cid_of_path(dir.path(), Profile::V0Default),
        "QmYFvMzVpe3iXomtQqDVnJNeSukrsvV8PWBuWdSj1ZoyHc"
    );
    assert_eq!(
        cid_of_path(dir.path(), Profile::V1RawLeaves),
        "bafybeid6pmk4p67u4fcpmujm2enwjdh6ztj5gnrbsd3mk4oizqseyve3iq"
    );
    Ok(())
}

#[test]
fn directory_kubo_would_shard_is_refused() -> io::Result<()> {
    // 262144 / (34-byte CIDv0 + 100-byte name) = 1957 entries reach the threshold.
    let dir = tempfile::tempdir()?;
    for i in 0..1957 {
        fs::write(dir.path().join(format!("{i:0>100}")), b"")?;
    }
    let error = import_path(dir.path(), Profile::V0Default)
        .err()
        .map(|e| e.to_string());
    assert!(error.is_some_and(|e| e.contains("HAMT")));
    // One entry fewer stays a plain directory.
    fs::remove_file(dir.path().join(format!("{:0>100}", 0)))?;
    assert!(import_path(dir.path(), Profile::V0Default).is_ok());
    Ok(())
}

fn commp_of(byte: u8, len: u64) -> Option<(u64, String)> {
    let commitment = piece_cid(io::Read::take(io::repeat(byte), len)).ok()?;
    Some((commitment.padded_size, commitment.cid().to_string()))
}

#[test]
fn piece_cids_match_go_fil_commp_hashhash_zero_vectors() {
    // testdata/zero.txt: payload size, padded piece size, piece CID.
    let vectors = "\
96,128,baga6ea4seaqdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy
126,128,baga6ea4seaqdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy
127,128,baga6ea4seaqdomn3tgwgrh3g532zopskstnbrd2n3sxfqbze7rxt7vqn7veigmy
192,256,baga6ea4seaqgiktap34inmaex4wbs6cghlq5i2j2yd2bb2zndn5ep7ralzphkdy
253,256,baga6ea4seaqgiktap34inmaex4wbs6cghlq5i2j2yd2bb2zndn5ep7ralzphkdy
254,256,baga6ea4seaqgiktap34inmaex4wbs6cghlq5i2j2yd2bb2zndn5ep7ralzphkdy
255,512,baga6ea4seaqfpirydiugkk7up5v666wkm6n6jlw6lby2wxht5mwaqekerdfykjq
256,512,baga6ea4seaqfpirydiugkk7up5v666wkm6n6jlw6lby2wxht5mwaqekerdfykjq
384,512,baga6ea4seaqfpirydiugkk7up5v666wkm6n6jlw6lby2wxht5mwaqekerdfykjq
507,512,baga6ea4seaqfpirydiugkk7up5v666wkm6n6jlw6lby2wxht5mwaqekerdfykjq
508,512,baga6ea4seaqfpirydiugkk7up5v666wkm6n6jlw6lby2wxht5mwaqekerdfykjq
509,1024,baga6ea4seaqb66wjlfkrbye6uqoemcyxmqylwmrm235uclwfpsyx3ge2imidoly
512,1024,baga6ea4seaqb66wjlfkrbye6uqoemcyxmqylwmrm235uclwfpsyx3ge2imidoly
768,1024,baga6ea4seaqb66wjlfkrbye6uqoemcyxmqylwmrm235uclwfpsyx3ge2imidoly
1015,1024,baga6ea4seaqb66wjlfkrbye6uqoemcyxmqylwmrm235uclwfpsyx3ge2imidoly
1016,1024,baga6ea4seaqb66wjlfkrbye6uqoemcyxmqylwmrm235uclwfpsyx3ge2imidoly
1017,2048,baga6ea4seaqpy7usqklokfx2vxuynmupslkeutzexe2uqurdg5vhtebhxqmpqmy
1024,2048,baga6ea4seaqpy7usqklokfx2vxuynmupslkeutzexe2uqurdg5vhtebhxqmpqmy";
    check_commp_vectors(0x00, vectors);
}

#[test]
fn piece_cids_match_go_fil_commp_hashhash_0xcc_vectors() {
    // testdata/0xCC.txt: payload size, padded piece size, piece CID.
    let vectors = "\
96,128,baga6ea4seaqhwcjhi4krhl3ht6dewnwevkpxbepxy7p7onwgz65t52typbsysby
126,128,baga6ea4seaqapbh46gdnszvb7fcinevsy5bzg3b4higkh7groptswf6zas6jamy
127,128,baga6ea4seaqmfldjtozgne6adk7eve2vdxte7vzlivae7nzsbrawobo546zkijq
192,256,baga6ea4seaqkx7m2s6r4zahtlbwrs5ryvemkclwfp7nijopdd5swpdnxzjf7wkq
253,256,baga6ea4seaql6ldbyafhiecr36xba5tufreyo4km2ts3lfknhl2zogp3aztxijy
254,256,baga6ea4seaqkixbzz75uys2pcjbrbdilgjhmum72qm4xphrwav2iyel5oat4aka
255,512,baga6ea4seaqg7celu5y2iwbi2ra5koygvotxtzr5lj6vzvxi6gfub6mpa6niwpi
256,512,baga6ea4seaqi7c3dnwkqysqh4lpkz5jaxz2d2f5bvo3ttu2hnfmdewhcoji56na
384,512,baga6ea4seaqhexlmnzbarsbdbdahs7e36dkq5vkdwsrttehoakrif5wiqme36lq
507,512,baga6ea4seaqenvh5mcy5cjqwsbubbpczprkk2onwvfjd2743zkqh6ofuzkatwey
508,512,baga6ea4seaqb6ckbupixkhwp7thgb52f4en222boppajkqk7gaomkpof3lh4cei
509,1024,baga6ea4seaqdzbeaexq6gpbqh2tlnbz5mm5neap2kejsketkogzd6x2dx7dzkii
512,1024,baga6ea4seaqojaa522sjqms2wipasjbxnjgytunsgp52tgrfcofj73f7q7ou6hy
768,1024,baga6ea4seaqb6xvxaybzp6vslujjiwvgt23ckrwt7y53eddy5qmc6csnc37lwpi
1015,1024,baga6ea4seaqmgiyjcutwgo6glks2mogixs6mb4sbehto6uzienucfx23wbtkica
1016,1024,baga6ea4seaqjxgfdkdu37aryhg7bqqiwizj5f6ugasftgeocabwnj4cxkgisaoq
1017,2048,baga6ea4seaqf3n5ob5qonkwnxfcbjzftsagbnrjfzualqvzhcylz46b7sgz6wmi
1024,2048,baga6ea4seaqdlpnhgsndrgjeu4p46hahlsr4lybg6du4d56ooppdpxhcofxeuoi";
    check_commp_vectors(0xcc, vectors);
}

fn check_commp_vectors(byte: u8, vectors: &str) {
    for line in vectors.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let payload: u64 = fields[0].parse().unwrap_or_default();
        let padded: u64 = fields[1].parse().unwrap_or_default();
        assert_eq!(
            commp_of(byte, payload),
            Some((padded, fields[2].to_string())),
            "payload {payload} of {byte:#x}"
        );
    }
}

#[test]
fn piece_cid_matches_go_fil_commcid_fixture() {
    // go-fil-commcid commcid_test.go "127OfEach0-1-2-3": 127 bytes each of 0, 1, 2, 3.
    let payload: Vec<u8> = (0u8..4).flat_map(|b| [b; 127]).collect();
    let commitment = piece_cid(&payload[..]).ok();
    assert_eq!(
        commitment.map(|c| (c.padded_size, c.unpadded_size)),
        Some((512, 508))
    );
    assert_eq!(
        commitment.map(|c| c.cid().to_string()).as_deref(),
        Some("baga6ea4seaqes3nobte6ezpp4wqan2age2s5yxcatzotcvobhgcmv5wi2xh5mbi")
    );
}

#[test]
fn piece_cids_of_pseudo_random_payloads_match_data_segment() {
    // @web3-storage/data-segment 5.3.0 `Piece.fromPayload` (FRC-0058 reference
    // code, itself checked against the go-fil-commcid fixture above) over the
    // xorshift payloads; see tests/vectors/README.md. Trees up to 2^19 leaves.
    let vectors = [
        (
            65,
            128,
            "baga6ea4seaqheqhaie3icht2guozbbkb22yiz5oakppisxwjrrm2zotgzju4qoy",
        ),
        (
            127,
            128,
            "baga6ea4seaqg34qxnqt5uaqsizc4edxtdgbbggkltijhuw7xgr7lfc3du5z24dy",
        ),
        (
            128,
            256,
            "baga6ea4seaqabmkr34ti7jro5qmxe53mcmzqjdplljen3yh6aqxdlob4vqvrsla",
        ),
        (
            1000,
            1024,
            "baga6ea4seaqjyyqo347vmqp4niib45vghuerdkq3x3dhaxncxeh62glgcabjemq",
        ),
        (
            65024,
            65536,
            "baga6ea4seaqdwmtnmjoc3gomiws4kfc5j6wizwzmyfurmzhkg7zngpjoi2ehqiy",
        ),
        (
            65025,
            131072,
            "baga6ea4seaqmusyaabkq6kdj6n3bk34jpgpxfuceiv3av54ofy6rmwwh424ccmi",
        ),
        (
            1_048_583,
            2_097_152,
            "baga6ea4seaqiunl4rsqvqhjmyjyvmdu62nnvsg64mhh7uezi25rfioujkzbuoky",
        ),
        (
            10_000_000,
            16_777_216,
            "baga6ea4seaqcbddrtyyn45g7yhulkkduedqresa4bvhhuqwewprj76jwuwxa4by",
        ),
    ];
    let data = xorshift(10_000_000);
    for (len, padded, expected) in vectors {
        let commitment = piece_cid(&data[..len]).ok();
        assert_eq!(
            commitment.map(|c| c.padded_size),
            Some(padded),
            "{len} bytes"
        );
        assert_eq!(
            commitment.map(|c| c.cid().to_string()).as_deref(),
            Some(expected),
            "{len} bytes"
        );
        assert_eq!(
            commitment.map(|c| c.unpadded_size),
            Some(padded / 128 * 127)
        );
    }
}
