// Package sshfacts owns what the SSH handler tells policy about an exec
// request's command: the command as sent (ssh.command), its words
// (ssh.argv), the programs it runs, and whether it is more than one simple
// command. Policy decides on these facts, so a wrong fact is a policy
// bypass; where the package cannot be sure, it says so with a flag rather
// than guess.
//
// sshd runs an exec request's command as the user's login shell does with
// sh -c: the string is shell code, not an argv. This package reads it as a
// POSIX shell (dash, bash, ksh, zsh in its default mode) would, without
// running or expanding anything, and it does not pretend to be a shell:
//
//   - [Facts.Argv] is exactly what the shell passes to the program only
//     when [Facts.Literal] is true: one simple command whose words the
//     shell does not change. Leading NAME=value words are assignments, not
//     the program: FOO=1 rm x has Program rm, Argv [rm x] and Assignments
//     [FOO=1].
//   - [Facts.LiteralWords] says it word by word: a literal word is passed
//     on as that one word, only its quotes removed ('-exec', "x", \;). A
//     word with an expansion, a glob or brace expansion is not: the shell
//     may make it other text, several words or none ($'-exec' is -exec,
//     {-exec,rm} two words), so a program that reads its arguments as
//     options or commands (find, timeout, nice) may see other ones.
//   - Expansions ($HOME, ${x}, $((1+2)), ~, a{b,c}, $'...') and
//     substitutions ($(...), `...`, <(...)) are left in their words as
//     written and flagged: Expansion, Glob (*, ?, [...]), Substitution.
//   - Compound is set for anything beyond one simple command: lists and
//     pipelines (; & | && || newline), subshells, groups and other
//     reserved words, redirections, substitutions. Commands then lists
//     every simple command found, so policy can check each program of
//     cd /tmp && rm -rf x (cd, rm), including the commands inside $(...)
//     and backquotes.
//   - Compound is also set for an expansion that makes the shell evaluate
//     text, because that can run a command no word shows: bash evaluates
//     an array subscript in arithmetic, so a[$(cmd)] in a variable's value
//     (ls $((TERM))) or cut from the command's own text
//     ($((${BASH_EXECUTION_STRING:5:9}))) runs cmd. That is all
//     arithmetic ($((...)), $[...], ${x:i:n}, ${a[i]}, a[i]=v), ${!x},
//     ${x@P} (prompt expansion runs $(...)), ${x:=w}, $"..." (a
//     translation, which the environment can choose, is expanded) and
//     zsh's $x[i], $~x and ${(e)x}: every ${...} except ${P}, ${#P} and
//     ${P op word}, for P a name or a positional or special parameter, op
//     one of - + ? :- :+ :? # ## % %% / // ^ ^^ , ,, and a word whose own
//     expansions are inert. The
//     plain forms ($HOME, "${HOME}/x", $1, $'...', ~, a{b,c}) only
//     substitute text and set Expansion alone.
//
// Commands is best effort, and errs towards listing too much: it knows
// the separators, redirections, reserved words and the shapes of for,
// case, select and function, not the whole grammar. It may list a word
// that is not a program (a function's name, a stray word of a syntax the
// shell would reject); it should not leave out a program the shell would
// run, except in these cases, each of which sets a flag policy can deny:
//   - commands inside $((...)), bash 5.3's ${ cmd; } and here-document
//     bodies (Substitution), and those an evaluating expansion runs from
//     a value (Compound);
//   - a case pattern's ) inside $(...), which ends the substitution early
//     here (as in old shells) — the rest still reads as shell code
//     (Substitution, Compound);
//   - programs run by other programs: sh -c, bash, eval, exec, env,
//     xargs, sudo, find -exec, nohup, /usr/bin/time, jobs -x and the like. The command of such a program is its argument; policy must
//     treat these programs as running anything. So must it treat bash
//     builtins that evaluate arithmetic or a name's subscript: let TERM,
//     declare -i x=TERM, test -v 'a[TERM]', printf -v 'a[TERM]' and read
//     'a[TERM]' run the a[$(cmd)] in TERM's value, with no $ in a word.
//
// Program and Programs are base names: /tmp/x/rm and ./rm are rm. A
// program word with a slash runs that very file, so policy that allows
// programs by name must look at the words as written (Argv[0], and the
// first word of each of Commands), as proxy/ssh's ssh.program_paths does.
// Assignments can change which file runs (PATH=/x ls) or what it loads
// (LD_PRELOAD=/x.so ls) although Literal stays true.
//
// What the shell itself may add is outside these facts: aliases and
// functions defined in the user's startup files (bash reads ~/.bashrc
// under sshd), and which program PATH finds for a name. Policy that allows
// a program by name trusts the target's PATH and startup files.
//
// Shells that are not POSIX-like (fish, csh, tcsh) read commands
// differently; the facts assume a POSIX-like login shell on the target.
//
// # Error contract
//
// [Split] and [Analyze] fail together, for the same inputs, with errors
// wrapping one of:
//   - [ErrUnterminated]: a quote, $(, ${, $((, $' or backquote is not
//     closed;
//   - [ErrTrailingBackslash]: a backslash ends the command (the shells
//     would keep it; it is refused as a likely cut-off command);
//   - [ErrNUL]: a NUL byte, which sshd refuses in a command and which a
//     shell would read as the end of it;
//   - [ErrTooLong]: over [MaxCommandLen] bytes;
//   - [ErrTooComplex]: over [MaxWords] words and operators (those inside
//     substitutions included) or nested deeper than [MaxDepth];
//   - [ErrHeredocDelimiter]: a here-document delimiter with a $ or `
//     (<<$'EOF'), whose body ends at a different line in bash (EOF) and
//     in dash ($EOF), so the commands after it are not known.
//
// A command that cannot be read has no facts: the handler must refuse it.
// They never return facts or words with an error. Syntax the shell would
// reject (ls ), a redirection without a target) is not an error here; it is
// read as far as it goes, and flagged Compound.
package sshfacts
