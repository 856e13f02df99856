#!/bin/sh
# Documentation meta-test: every program has a man page that names each of
# its options and is in both completion files (which are up to date); the
# common options behave (--help and --version exit 0, an unknown option 2);
# the man pages lint clean; the README's test command is the one CI runs;
# `make install DESTDIR=...` installs programs, man pages and completions.
. "$(dirname "$0")/lib.sh"

progs=
for p in "$TOP"/bin/dsv4-*; do
    [ -x "$p" ] && progs="$progs ${p##*/}"
done
if [ -n "$progs" ]; then ok "programs built:$progs"; else bad "no programs in bin/ (run make)"; fi

# man_text PAGE: the page source with Fl macros turned into what they print
# ("Fl -output" and "Fl \-output" -> "--output"), one word per line
man_text() { sed -e 's/\\-/-/g' -e 's/Fl -/--/g' "$1" | tr -s ' \t,' '\n\n\n'; }

for p in $progs; do
    page=$TOP/man/$p.1
    if [ -f "$page" ]; then ok "$p: man page"; else bad "$p: no man/$p.1"; continue; fi

    expect 0 "$p --help exits 0" -- "$p" --help
    grep_out "^usage: $p" "$p --help prints the usage"
    cp out help.txt
    # every long option in --help (and in --dump-options, but the hidden
    # --dump-options itself) is documented
    opts=$( { grep -o -e '--[a-z][a-z0-9-]*' help.txt; "$p" --dump-options | cut -f 1; } |
            grep -v -x -e '--dump-options' | sort -u)
    [ -n "$opts" ] && ok "$p: options listed" || bad "$p: no options found in --help"
    man_text "$page" > man.txt
    for o in $opts; do
        if grep -q -x -e "$o" -e "$o=.*" -e "$o\\..*" man.txt; then ok "$p: $o in the man page"
        else bad "$p: $o is not in man/$p.1"; fi
        if grep -q -e "[' ]$o[ ']" "$TOP/completions/dsv4.bash"; then ok "$p: $o in dsv4.bash"
        else bad "$p: $o is not in completions/dsv4.bash (run make completions)"; fi
        if grep -q -e "[',{]$o[]=,}[]" "$TOP/completions/_dsv4"; then ok "$p: $o in _dsv4"
        else bad "$p: $o is not in completions/_dsv4 (run make completions)"; fi
    done
    if grep -q -e "^complete -F _dsv4 .*\\<$p\\>" "$TOP/completions/dsv4.bash"; then ok "$p: registered in dsv4.bash"
    else bad "$p: not registered in completions/dsv4.bash"; fi
    if grep -q -e "^#compdef .*\\<$p\\>" "$TOP/completions/_dsv4"; then ok "$p: registered in _dsv4"
    else bad "$p: not in the #compdef line of completions/_dsv4"; fi

    expect 0 "$p --version exits 0" -- "$p" --version
    grep_out "^$p " "$p --version names the program"
    expect 2 "$p: unknown option exits 2" -- "$p" --no-such-option
    grep_err "--help" "$p: unknown option points to --help"
done

# the committed completions are what gen.sh makes from the current programs
if sh "$TOP/completions/gen.sh" "$T/gen" >gen.log 2>&1 &&
   cmp -s "$T/gen/dsv4.bash" "$TOP/completions/dsv4.bash" && cmp -s "$T/gen/_dsv4" "$TOP/completions/_dsv4"; then
    ok "completions are up to date"
else
    bad "completions are stale: run make completions"; diff "$T/gen/dsv4.bash" "$TOP/completions/dsv4.bash" | head -n 10
fi
if command -v bash >/dev/null 2>&1; then
    expect 0 "dsv4.bash parses" -- bash -n "$TOP/completions/dsv4.bash"
fi
if command -v zsh >/dev/null 2>&1; then
    expect 0 "_dsv4 parses" -- zsh -n "$TOP/completions/_dsv4"
fi

# the overview and the format pages exist and refer to each other
for page in dsv4.7 dsv4-model.5; do
    if [ -f "$TOP/man/$page" ]; then ok "man/$page exists"; else bad "man/$page is missing"; fi
done

# mandoc lint (warnings and worse; its STYLE level flags every cross
# reference to a page that is not installed yet)
if command -v mandoc >/dev/null 2>&1; then
    expect 0 "mandoc -Tlint is clean" -- mandoc -Tlint -W warning "$TOP"/man/*.[1-8]
    sed 's/^/    /' err | head -n 20
else
    echo "skip: mandoc not installed, man pages not linted"
fi

# README's test command (the code-block line that runs make check) is run
# verbatim by .ci/run
readme_cmd=$(awk '/^```/ { inb = !inb; next } inb && /make check/ && !/apt-get/ { print; exit }' "$TOP/README.md")
if [ -n "$readme_cmd" ]; then ok "README has a test command: $readme_cmd"; else bad "README has no test command"; fi
if [ -x "$TOP/.ci/run" ]; then ok ".ci/run is executable"; else bad ".ci/run is missing or not executable"; fi
if [ -n "$readme_cmd" ] && grep -q -x -F -e "$readme_cmd" "$TOP/.ci/run"; then ok ".ci/run runs the README test command"
else bad ".ci/run does not run the README test command '$readme_cmd' verbatim"; fi

# make install DESTDIR=... installs programs, man pages and completions
D=$T/stage
expect 0 "make install DESTDIR" -- make -s -C "$TOP" install DESTDIR="$D"
have() { # have DESC FIND-ARGS...
    _d=$1; shift
    if [ -n "$(find "$D" "$@" -print 2>/dev/null | head -n 1)" ]; then ok "installed: $_d"; else bad "not installed: $_d"; fi
}
for p in $progs; do
    have "$p" -path "*/bin/$p" -type f -perm -u+x
    have "$p.1" -path "*/man1/$p.1" -type f
    have "bash completion link $p" -path "*/bash-completion/completions/$p" -type l
done
have "dsv4-model.5" -path '*/man5/dsv4-model.5' -type f
have "dsv4.7" -path '*/man7/dsv4.7' -type f
have "bash completion" -path '*/bash-completion/completions/dsv4' -type f
have "zsh completion" -path '*/site-functions/_dsv4' -type f
if [ -z "$(find "$D" -name '*.tmp.*' -print)" ]; then ok "no temporary files installed"; else bad "temporary files installed"; fi
expect 0 "make uninstall DESTDIR" -- make -s -C "$TOP" uninstall DESTDIR="$D"
if [ -z "$(find "$D" -type f -print -o -type l -print)" ]; then ok "uninstall removes every installed file"
else bad "uninstall left: $(find "$D" -type f -print -o -type l -print | head -n 5 | tr '\n' ' ')"; fi

finish
