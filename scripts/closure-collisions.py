#!/usr/bin/env python3
"""Finds closures in the test targets that the compiler gave another closure's name.

Swift 6.3.1 numbers a closure written inside a macro's argument (`#expect(await f { a })`) and
the next closure after it, in the same enclosing closure, alike. Both then get one function, the
first one's body: the second closure's code is never compiled, and it silently runs the other's.
(A test waiting for `count == 0` right after one waiting for `count == 1` inside `#expect` waited
for `count == 1` again.) No diagnostic says so.

This reads the compiler commands a verbose build of the tests printed, compiles each test source
file to raw SIL, and reports every closure referenced from more than one source line: each closure
expression is referenced once, where it is written.

    swift build --build-tests -v > build.log 2>&1
    scripts/closure-collisions.py build.log

Exit status 1 when a collision is found, 2 when the log holds no test compilations (the build was
not verbose, or found nothing to rebuild: touch the tests' sources first).
"""

import collections
import os
import re
import shlex
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

# Options that name the outputs of a whole compilation: the SIL runs write only their own.
OUTPUT_OPTIONS = {
    "-o",
    "-emit-dependencies-path",
    "-emit-reference-dependencies-path",
    "-serialize-diagnostics-path",
    "-index-store-path",
    "-supplementary-output-file-map",
}
FLAGS_DROPPED = {"-c", "-index-system-modules"}
CLOSURE_REFERENCE = re.compile(r"function_ref @(\$s\S*fU\d*_) ")
LOCATION = re.compile(r'loc "([^"]*)":(\d+):\d+')


def test_module_commands(log_path):
    """One frontend command per test module, with every file of the module and none primary."""
    modules = {}
    with open(log_path, errors="replace") as log:
        for line in log:
            if "swift-frontend -frontend -c " not in line or "-primary-file" not in line:
                continue
            arguments = shlex.split(line.strip())
            module = arguments[arguments.index("-module-name") + 1]
            if module in modules or not any("/Tests/" in a for a in arguments if a.endswith(".swift")):
                continue
            command = []
            index = 0
            while index < len(arguments):
                argument = arguments[index]
                if argument in OUTPUT_OPTIONS:
                    index += 2
                elif argument in FLAGS_DROPPED or argument == "-primary-file":
                    index += 1
                else:
                    command.append(argument)
                    index += 1
            modules[module] = command
    return modules


def place(location):
    """file:line, or the macro whose expansion the reference is in."""
    if not location:
        return "?"
    file = os.path.basename(location.group(1))
    macro = re.search(r"\d+([a-z]\w*)fMf_\.swift$", file)
    return f"a #{macro.group(1)} expansion" if file.startswith("@__swiftmacro") and macro else f"{file}:{location.group(2)}"


def references(command, source, output):
    """The lines each closure is referenced from, in `source` compiled to raw SIL."""
    position = command.index(source)
    run = command[:position] + ["-primary-file", source] + command[position + 1 :]
    run += ["-emit-silgen", "-o", output]
    result = subprocess.run(run, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{source}: the SIL compilation failed:\n{result.stderr[-2000:]}")
    lines = collections.defaultdict(set)
    with open(output) as sil:
        for line in sil:
            closure = CLOSURE_REFERENCE.search(line)
            if closure:
                location = LOCATION.search(line)
                lines[closure.group(1)].add(place(location))
    return {name: sorted(at) for name, at in lines.items() if len(at) > 1}


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    modules = test_module_commands(sys.argv[1])
    if not modules:
        print("No test compilations in the log: build the tests with -v after touching them.", file=sys.stderr)
        return 2
    jobs = [
        (command, source)
        for command in modules.values()
        for source in command
        if source.endswith(".swift") and "/Tests/" in source
    ]
    with tempfile.TemporaryDirectory() as directory:
        outputs = [os.path.join(directory, f"{index}.sil") for index in range(len(jobs))]
        with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            found = list(pool.map(lambda pair: references(*pair[0], pair[1]), zip(jobs, outputs)))
    collisions = 0
    for (_, source), closures in zip(jobs, found):
        for name, lines in closures.items():
            collisions += 1
            demangled = subprocess.run(["swift", "demangle", "--simplified", "--compact", name], capture_output=True, text=True)
            print(f"{source}: one closure for the closures at {', '.join(lines)}: {demangled.stdout.strip()}")
    print(f"{len(jobs)} test files in {len(modules)} modules compiled to SIL; {collisions} closures share a name.")
    return 1 if collisions else 0


if __name__ == "__main__":
    sys.exit(main())
