package sshfacts

import (
	"bytes"
	"errors"
	"os/exec"
	"reflect"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	tests := []struct {
		name    string
		command string
		want    []string
		err     error
	}{
		{"empty", "", nil, nil},
		{"blanks only", " \t \n ", nil, nil},
		{"plain words", "ls -la /tmp", []string{"ls", "-la", "/tmp"}, nil},
		{"runs of blanks", "  ls \t -la  ", []string{"ls", "-la"}, nil},
		{"single quotes literal", `echo 'a $b "c" \d'`, []string{"echo", `a $b "c" \d`}, nil},
		{"double quotes", `echo "a b"`, []string{"echo", "a b"}, nil},
		{"double quote escapes", "echo \"\\$ \\` \\\" \\\\ \\a\"", []string{"echo", "$ ` \" \\ \\a"}, nil},
		{"double quote line continuation", "echo \"a\\\nb\"", []string{"echo", "ab"}, nil},
		{"backslash outside quotes", `echo a\ b \'c \\ \$x`, []string{"echo", "a b", "'c", `\`, "$x"}, nil},
		{"line continuation joins", "ec\\\nho x", []string{"echo", "x"}, nil},
		{"line continuation between words", "echo \\\n x", []string{"echo", "x"}, nil},
		{"adjacent parts join", `"a"'b'c`, []string{"abc"}, nil},
		{"empty quotes are a word", `echo '' "" x`, []string{"echo", "", "", "x"}, nil},
		{"empty quotes joined", `a''b""`, []string{"ab"}, nil},
		{"newline in quotes", "echo 'a\nb'", []string{"echo", "a\nb"}, nil},
		{"comment", "ls # rm -rf /", []string{"ls"}, nil},
		{"hash inside a word", "echo a#b", []string{"echo", "a#b"}, nil},
		{"comment to end of line", "ls # x\npwd", []string{"ls", "\n", "pwd"}, nil},
		{"operators are words", "a&&b||c;d|e&f", []string{"a", "&&", "b", "||", "c", ";", "d", "|", "e", "&", "f"}, nil},
		{"quoted operators are plain words", `a '&&' ";"`, []string{"a", "&&", ";"}, nil},
		{"redirections", "ls >out 2>&1 <in", []string{"ls", ">", "out", "2>&", "1", "<", "in"}, nil},
		{"append and here-string", "cat >>f <<<x", []string{"cat", ">>", "f", "<<<", "x"}, nil},
		{"newlines squeezed", "\n\nls\n\n\npwd\n\n", []string{"ls", "\n", "pwd"}, nil},
		{"variable kept", `echo $HOME "$USER" '$X'`, []string{"echo", "$HOME", "$USER", "$X"}, nil},
		{"parameter expansion kept", `echo ${a:-"b c"}`, []string{"echo", `${a:-"b c"}`}, nil},
		{"substitution is one word", `echo $(ls "a b") x`, []string{"echo", `$(ls "a b")`, "x"}, nil},
		{"substitution in double quotes", `echo "x $(ls "a b") y"`, []string{"echo", `x $(ls "a b") y`}, nil},
		{"nested substitution", `echo $(a $(b c))`, []string{"echo", "$(a $(b c))"}, nil},
		{"backquotes", "echo `ls -l` x", []string{"echo", "`ls -l`", "x"}, nil},
		{"arithmetic", "echo $((1 + (2*3)))", []string{"echo", "$((1 + (2*3)))"}, nil},
		{"subshell in substitution", "echo $((a) )", []string{"echo", "$((a) )"}, nil},
		{"process substitution", "diff <(ls a) >(cat)", []string{"diff", "<(ls a)", ">(cat)"}, nil},
		{"lone dollar", "echo $ a$", []string{"echo", "$", "a$"}, nil},
		{"here-document body is not words", "cat <<EOF\nhello world\nEOF\nls", []string{"cat", "<<", "EOF", "\n", "ls"}, nil},
		{"here-document with tabs", "cat <<-EOF\n\tx\n\tEOF\nls", []string{"cat", "<<-", "EOF", "\n", "ls"}, nil},
		{"here-document delimiter quoted with $'", "cat <<$'EOF'\nbody\nEOF\nrm /tmp/x/victim\n$'EOF'", nil, ErrHeredocDelimiter},
		{"here-document delimiter quoted with $\"", "cat <<$\"EOF\"\nbody\nEOF\nrm /tmp/x/victim\n$\"EOF\"", nil, ErrHeredocDelimiter},
		{"here-document delimiter with escapes", "cat <<-$'E\\x4fF'\nEOF\nrm x\nE\\x4fF", nil, ErrHeredocDelimiter},
		{"here-document delimiter with a quoted $", "cat <<'$X'\nbody\n$X", nil, ErrHeredocDelimiter},
		{"here-document delimiter with an escaped $", "cat <<\\$X\nbody\n$X", nil, ErrHeredocDelimiter},
		{"here-document delimiter with a parameter", "cat <<${X}\nbody\n${X}", nil, ErrHeredocDelimiter},
		{"here-document delimiter with backquotes", "cat <<`X`\nbody\n`X`", nil, ErrHeredocDelimiter},
		{"here-document delimiter with $ in a substitution", "ls $(cat 2<<$'EOF'\nEOF\nrm x\n$'EOF'\n)", nil, ErrHeredocDelimiter},
		{"here-document delimiter with $ in backquotes", "ls `cat <<$'EOF'\nEOF\nrm x\n$'EOF'\n`", nil, ErrHeredocDelimiter},
		{"dollar in a here-document body", "cat <<EOF\n$'EOF'\nEOF\nls", []string{"cat", "<<", "EOF", "\n", "ls"}, nil},
		{"unterminated single quote", "echo 'abc", nil, ErrUnterminated},
		{"unterminated double quote", `echo "abc`, nil, ErrUnterminated},
		{"unterminated escape in double quote", `echo "abc\`, nil, ErrUnterminated},
		{"unterminated substitution", "echo $(ls", nil, ErrUnterminated},
		{"unterminated backquote", "echo `ls", nil, ErrUnterminated},
		{"unterminated parameter", "echo ${a", nil, ErrUnterminated},
		{"unterminated ansi-c quote", "echo $'a", nil, ErrUnterminated},
		{"trailing backslash", `echo a\`, nil, ErrTrailingBackslash},
		{"NUL", "ls\x00; rm", nil, ErrNUL},
		{"too long", strings.Repeat("a", MaxCommandLen+1), nil, ErrTooLong},
		{"too many words", strings.Repeat("a ", MaxWords+1), nil, ErrTooComplex},
		{"as many words as allowed", strings.Repeat("a ", MaxWords), repeat("a", MaxWords), nil},
		{"nested too deep", strings.Repeat("$(", MaxDepth+1) + strings.Repeat(")", MaxDepth+1), nil, ErrTooComplex},
		{"nested as deep as allowed", strings.Repeat("$(", MaxDepth) + strings.Repeat(")", MaxDepth), []string{strings.Repeat("$(", MaxDepth) + strings.Repeat(")", MaxDepth)}, nil},
		{"parameters nested too deep", strings.Repeat("${", MaxDepth+1) + strings.Repeat("}", MaxDepth+1), nil, ErrTooComplex},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Split(tt.command)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Split(%q) error = %v, want %v", tt.command, err, tt.err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Split(%q) = %q, want %q", tt.command, got, tt.want)
			}
			_, aerr := Analyze(tt.command)
			if !errors.Is(aerr, tt.err) {
				t.Fatalf("Analyze(%q) error = %v, Split's is %v", tt.command, aerr, err)
			}
		})
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// flags lists a Facts' booleans by name, for compact test tables.
func flags(f Facts) string {
	var out []string
	for _, fl := range []struct {
		on   bool
		name string
	}{
		{f.Compound, "compound"}, {f.Substitution, "substitution"},
		{f.Expansion, "expansion"}, {f.Glob, "glob"}, {f.Redirection, "redirection"},
	} {
		if fl.on {
			out = append(out, fl.name)
		}
	}
	return strings.Join(out, ",")
}

func TestAnalyze(t *testing.T) {
	tests := []struct {
		name        string
		command     string
		argv        []string
		programs    []string
		assignments []string
		flags       string
	}{
		{"simple", "ls -la", []string{"ls", "-la"}, []string{"ls"}, nil, ""},
		{"empty", "", nil, nil, nil, ""},
		{"path program", "/bin/rm -f x", []string{"/bin/rm", "-f", "x"}, []string{"rm"}, nil, ""},
		{"relative program", "./bin/tool", []string{"./bin/tool"}, []string{"tool"}, nil, ""},
		{"quoted program", `'r''m' x`, []string{"rm", "x"}, []string{"rm"}, nil, ""},
		{"trailing semicolon", "ls;", []string{"ls"}, []string{"ls"}, nil, ""},
		{"trailing newline", "ls\n", []string{"ls"}, []string{"ls"}, nil, ""},
		{"comment", "ls # ; rm -rf /", []string{"ls"}, []string{"ls"}, nil, ""},
		{"assignment prefix", "FOO=1 rm x", []string{"rm", "x"}, []string{"rm"}, []string{"FOO=1"}, ""},
		{"several assignments", "A=1 B+=2 c[3]=x LD_PRELOAD=/x.so ls", []string{"ls"}, []string{"ls"}, []string{"A=1", "B+=2", "c[3]=x", "LD_PRELOAD=/x.so"}, "compound,glob"},
		{"assignment with quoted value", `A="x y" ls`, []string{"ls"}, []string{"ls"}, []string{"A=x y"}, ""},
		{"quoted name is not an assignment", `"A"=1 ls`, []string{"A=1", "ls"}, []string{"A=1"}, nil, ""},
		{"assignment after the program is an argument", "env A=1", []string{"env", "A=1"}, []string{"env"}, nil, ""},
		{"assignment only", "A=1", nil, nil, []string{"A=1"}, ""},
		{"assignment with tilde", "P=a:~/bin ls", []string{"ls"}, []string{"ls"}, []string{"P=a:~/bin"}, "expansion"},
		{"tilde after = in an argument", "ls --dir=~/x", []string{"ls", "--dir=~/x"}, []string{"ls"}, nil, ""},
		{"tilde in an argument like an assignment", "echo x=~", []string{"echo", "x=~"}, []string{"echo"}, nil, "expansion"},
		{"bash 5.3 command substitution", "echo ${ rm x; }", []string{"echo", "${ rm x; }"}, []string{"echo"}, nil, "compound,substitution,expansion"},
		{"continuation after dollar", "echo $\\\nHOME", []string{"echo", "$\\\nHOME"}, []string{"echo"}, nil, "expansion"},
		{"and list", "cd /tmp && rm -rf x", []string{"cd", "/tmp"}, []string{"cd", "rm"}, nil, "compound"},
		{"or list", "test -f x || touch x", []string{"test", "-f", "x"}, []string{"test", "touch"}, nil, "compound"},
		{"sequence", "ls; rm x", []string{"ls"}, []string{"ls", "rm"}, nil, "compound"},
		{"newline separated", "ls\nrm x", []string{"ls"}, []string{"ls", "rm"}, nil, "compound"},
		{"pipeline", "cat /etc/passwd | nc host 1", []string{"cat", "/etc/passwd"}, []string{"cat", "nc"}, nil, "compound"},
		{"bash pipe with stderr", "a |& b", []string{"a"}, []string{"a", "b"}, nil, "compound"},
		{"background", "sleep 1 &", []string{"sleep", "1"}, []string{"sleep"}, nil, "compound"},
		{"no blanks around operators", "ls;rm x&&id", []string{"ls"}, []string{"ls", "rm", "id"}, nil, "compound"},
		{"subshell", "(cd /; rm x)", []string{"cd", "/"}, []string{"cd", "rm"}, nil, "compound"},
		{"group", "{ rm x; }", []string{"rm", "x"}, []string{"rm"}, nil, "compound"},
		{"negation", "! rm x", []string{"rm", "x"}, []string{"rm"}, nil, "compound"},
		{"time keyword", "time -p rm x", []string{"rm", "x"}, []string{"rm"}, nil, "compound"},
		{"if", "if test -f x; then rm x; else touch x; fi", []string{"test", "-f", "x"}, []string{"test", "rm", "touch"}, nil, "compound"},
		{"while", "while true; do rm x; done", []string{"true"}, []string{"true", "rm"}, nil, "compound"},
		{"for", "for f in a b; do rm $f; done", []string{"rm", "$f"}, []string{"rm"}, nil, "compound,expansion"},
		{"case", "case $x in a|b) rm x;; (c) ls;; esac; id", []string{"rm", "x"}, []string{"rm", "ls", "id"}, nil, "compound,expansion"},
		{"case with newlines", "case x\nin\na|b) rm;;\nesac", []string{"rm"}, []string{"rm"}, nil, "compound"},
		{"broken case lists on", "case x; rm -rf /", []string{"rm", "-rf", "/"}, []string{"rm"}, nil, "compound"},
		{"case without final ;;", "case x in a) rm\nesac", []string{"rm"}, []string{"rm"}, nil, "compound"},
		{"function", "function f { rm x; }; f", []string{"rm", "x"}, []string{"rm", "f"}, nil, "compound"},
		{"posix function", "f() { rm x; }", []string{"f"}, []string{"f", "rm"}, nil, "compound"},
		{"coprocess", "coproc rm x", []string{"rm", "x"}, []string{"rm"}, nil, "compound"},
		{"named coprocess", "coproc C { rm x; }", []string{"C"}, []string{"C", "rm"}, nil, "compound"},
		{"double brackets", "[[ -f x ]] && rm x", []string{"[[", "-f", "x", "]]"}, []string{"[[", "rm"}, nil, "compound"},
		{"quoted keyword is a program", `'if' x`, []string{"if", "x"}, []string{"if"}, nil, ""},
		{"keyword as argument", "echo if then", []string{"echo", "if", "then"}, []string{"echo"}, nil, ""},
		{"keyword after assignment", "A=1 if", []string{"if"}, []string{"if"}, []string{"A=1"}, ""},
		{"redirection", "echo x > /etc/passwd", []string{"echo", "x"}, []string{"echo"}, nil, "compound,redirection"},
		{"redirection first", ">out ls -l", []string{"ls", "-l"}, []string{"ls"}, nil, "compound,redirection"},
		{"io numbers", "ls 2>/dev/null 1>&2", []string{"ls"}, []string{"ls"}, nil, "compound,redirection"},
		{"digits then a word are an argument", "echo 2 >x", []string{"echo", "2"}, []string{"echo"}, nil, "compound,redirection"},
		{"input redirection", "wc -l < /etc/shadow", []string{"wc", "-l"}, []string{"wc"}, nil, "compound,redirection"},
		{"redirection only", "> x", nil, nil, nil, "compound,redirection"},
		{"here-document quoted", "cat <<'EOF'\n$(rm x)\nEOF", []string{"cat"}, []string{"cat"}, nil, "compound,redirection"},
		{"here-document expanded", "cat <<EOF\n$(rm x)\nEOF", []string{"cat"}, []string{"cat"}, nil, "compound,substitution,expansion,redirection"},
		{"here-document then command", "cat <<E1 <<-E2\na\nE1\n\tb\n\tE2\nrm x", []string{"cat"}, []string{"cat", "rm"}, nil, "compound,redirection"},
		{"command substitution", "echo $(whoami)", []string{"echo", "$(whoami)"}, []string{"echo", "whoami"}, nil, "compound,substitution"},
		{"backquotes", "echo `id -u`", []string{"echo", "`id -u`"}, []string{"echo", "id"}, nil, "compound,substitution"},
		{"nested backquotes", "echo `echo \\`rm x\\``", []string{"echo", "`echo \\`rm x\\``"}, []string{"echo", "echo", "rm"}, nil, "compound,substitution"},
		{"substitution as program", "$(echo rm) -rf /", []string{"$(echo rm)", "-rf", "/"}, []string{"$(echo rm)", "echo"}, nil, "compound,substitution"},
		{"substitution in quotes", `echo "$(rm -rf "/x y")"`, []string{"echo", `$(rm -rf "/x y")`}, []string{"echo", "rm"}, nil, "compound,substitution"},
		{"substitution in assignment", "A=$(rm x) ls", []string{"ls"}, []string{"ls", "rm"}, []string{"A=$(rm x)"}, "compound,substitution"},
		{"substitution in assignment only", "A=$(rm x)", []string{"rm", "x"}, []string{"rm"}, []string{"A=$(rm x)"}, "compound,substitution"},
		{"substitution in redirection", "ls > $(rm x)", []string{"ls"}, []string{"ls", "rm"}, nil, "compound,substitution,redirection"},
		{"substitution in parameter", `echo ${x:-$(rm x)}`, []string{"echo", "${x:-$(rm x)}"}, []string{"echo", "rm"}, nil, "compound,substitution,expansion"},
		{"substitution in for list", "for f in $(rm x); do :; done", []string{"rm", "x"}, []string{"rm", ":"}, nil, "compound,substitution"},
		{"compound substitution", "echo $(cd /; rm x | tee y)", []string{"echo", "$(cd /; rm x | tee y)"}, []string{"echo", "cd", "rm", "tee"}, nil, "compound,substitution"},
		{"process substitution", "diff <(cat a) b", []string{"diff", "<(cat a)", "b"}, []string{"diff", "cat"}, nil, "compound,substitution"},
		{"substitution inside arithmetic", "echo $(( $(rm x) + 1 ))", []string{"echo", "$(( $(rm x) + 1 ))"}, []string{"echo"}, nil, "compound,substitution,expansion"},
		{"not arithmetic after all", "echo $((rm x); ls)", []string{"echo", "$((rm x); ls)"}, []string{"echo", "rm", "ls"}, nil, "compound,substitution"},
		{"variable", "cat $HOME/.ssh/id_rsa", []string{"cat", "$HOME/.ssh/id_rsa"}, []string{"cat"}, nil, "expansion"},
		{"variable as program", "$X -rf /", []string{"$X", "-rf", "/"}, []string{"$X"}, nil, "expansion"},
		{"special parameters", "echo $1 $@ $? $$", []string{"echo", "$1", "$@", "$?", "$$"}, []string{"echo"}, nil, "expansion"},
		{"quoted variable", `echo "$HOME"`, []string{"echo", "$HOME"}, []string{"echo"}, nil, "expansion"},
		{"single-quoted dollar", `echo '$HOME'`, []string{"echo", "$HOME"}, []string{"echo"}, nil, ""},
		{"escaped dollar", `echo \$HOME "\$HOME"`, []string{"echo", "$HOME", "$HOME"}, []string{"echo"}, nil, ""},
		{"lone dollar", "echo $ x$", []string{"echo", "$", "x$"}, []string{"echo"}, nil, ""},
		{"ansi-c quote", `$'\x72m' -rf /`, []string{`$'\x72m'`, "-rf", "/"}, []string{`$'\x72m'`}, nil, "expansion"},
		{"locale quote", `echo $"hi"`, []string{"echo", `$"hi"`}, []string{"echo"}, nil, "compound,expansion"},
		{"old arithmetic", "echo $[1+2]", []string{"echo", "$[1+2]"}, []string{"echo"}, nil, "compound,expansion,glob"},
		{"arithmetic", "echo $((1+2))", []string{"echo", "$((1+2))"}, []string{"echo"}, nil, "compound,expansion"},
		{"arithmetic on a variable's value", "ls $((TERM))", []string{"ls", "$((TERM))"}, []string{"ls"}, nil, "compound,expansion"},
		{"arithmetic on the command's own text", "cat $(( ${BASH_EXECUTION_STRING:43:59} )) 'a[$(touch /tmp/x/pwned)]'", []string{"cat", "$(( ${BASH_EXECUTION_STRING:43:59} ))", "a[$(touch /tmp/x/pwned)]"}, []string{"cat"}, nil, "compound,expansion"},
		{"substring offset", "cat ${x:TERM:1}", []string{"cat", "${x:TERM:1}"}, []string{"cat"}, nil, "compound,expansion"},
		{"negative substring offset", "cat ${x: -1}", []string{"cat", "${x: -1}"}, []string{"cat"}, nil, "compound,expansion"},
		{"subscript", `cat "${a[TERM]}"`, []string{"cat", "${a[TERM]}"}, []string{"cat"}, nil, "compound,expansion"},
		{"indirection", "cat ${!TERM}", []string{"cat", "${!TERM}"}, []string{"cat"}, nil, "compound,expansion"},
		{"prompt expansion", "cat ${TERM@P}", []string{"cat", "${TERM@P}"}, []string{"cat"}, nil, "compound,expansion"},
		{"assigning default", "cat ${x:=a}", []string{"cat", "${x:=a}"}, []string{"cat"}, nil, "compound,expansion"},
		{"evaluating expansion in a default", "cat ${x:-$[TERM]}", []string{"cat", "${x:-$[TERM]}"}, []string{"cat"}, nil, "compound,expansion"},
		{"evaluating expansion in a quoted pattern", `cat "${x#'$((TERM))'}"`, []string{"cat", `${x#'$((TERM))'}`}, []string{"cat"}, nil, "compound,expansion"},
		{"zsh subscript", "cat $x[1]", []string{"cat", "$x[1]"}, []string{"cat"}, nil, "compound,expansion,glob"},
		{"zsh glob substitution", "cat $~x", []string{"cat", "$~x"}, []string{"cat"}, nil, "compound,expansion"},
		{"zsh parameter flags", "cat ${(e)x}", []string{"cat", "${(e)x}"}, []string{"cat"}, nil, "compound,expansion"},
		{"subscripted assignment", "a[TERM]=1", nil, nil, []string{"a[TERM]=1"}, "compound,glob"},
		{"plain parameters", `cat "$HOME/x" ${HOME}/y $1 ${10} $# ${#} ${#HOME}`, []string{"cat", "$HOME/x", "${HOME}/y", "$1", "${10}", "$#", "${#}", "${#HOME}"}, []string{"cat"}, nil, "expansion"},
		{"inert parameter forms", `cat ${x:-a} ${x-"$HOME"} ${x:+b} ${x?c} ${x#*/} ${x%%.*} ${x/a/b} ${x^^} ${x,} ${@:-d} ${-}`, []string{"cat", "${x:-a}", `${x-"$HOME"}`, "${x:+b}", "${x?c}", "${x#*/}", "${x%%.*}", "${x/a/b}", "${x^^}", "${x,}", "${@:-d}", "${-}"}, []string{"cat"}, nil, "expansion"},
		{"tilde", "cat ~/.ssh/id_rsa", []string{"cat", "~/.ssh/id_rsa"}, []string{"cat"}, nil, "expansion"},
		{"other user's tilde", "ls ~root", []string{"ls", "~root"}, []string{"ls"}, nil, "expansion"},
		{"tilde inside a word", "git show HEAD~1", []string{"git", "show", "HEAD~1"}, []string{"git"}, nil, ""},
		{"quoted tilde", `ls '~' \~`, []string{"ls", "~", "~"}, []string{"ls"}, nil, ""},
		{"zsh equals expansion", "=ls", []string{"=ls"}, []string{"=ls"}, nil, "expansion"},
		{"brace expansion", "rm {a,b}.txt", []string{"rm", "{a,b}.txt"}, []string{"rm"}, nil, "expansion"},
		{"brace sequence", "touch f{1..3}", []string{"touch", "f{1..3}"}, []string{"touch"}, nil, "expansion"},
		{"braces without expansion", "find . -exec rm {} \\;", []string{"find", ".", "-exec", "rm", "{}", ";"}, []string{"find"}, nil, ""},
		{"quoted braces", `echo '{a,b}' "{a,b}"`, []string{"echo", "{a,b}", "{a,b}"}, []string{"echo"}, nil, ""},
		{"glob star", "rm *.log", []string{"rm", "*.log"}, []string{"rm"}, nil, "glob"},
		{"glob question", "ls a?", []string{"ls", "a?"}, []string{"ls"}, nil, "glob"},
		{"glob bracket", "ls [ab]", []string{"ls", "[ab]"}, []string{"ls"}, nil, "glob"},
		{"test bracket is no glob", "[ -f x ]", []string{"[", "-f", "x", "]"}, []string{"["}, nil, ""},
		{"quoted glob", `rm '*' "?" \[a]`, []string{"rm", "*", "?", "[a]"}, []string{"rm"}, nil, ""},
		{"extglob is compound", "ls !(x)", []string{"ls", "!"}, []string{"ls", "x"}, nil, "compound"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Analyze(tt.command)
			if err != nil {
				t.Fatalf("Analyze(%q): %v", tt.command, err)
			}
			if !reflect.DeepEqual(f.Argv, tt.argv) {
				t.Errorf("Argv = %q, want %q", f.Argv, tt.argv)
			}
			if !reflect.DeepEqual(f.Programs, tt.programs) {
				t.Errorf("Programs = %q, want %q", f.Programs, tt.programs)
			}
			if !reflect.DeepEqual(f.Assignments, tt.assignments) {
				t.Errorf("Assignments = %q, want %q", f.Assignments, tt.assignments)
			}
			if got := flags(f); got != tt.flags {
				t.Errorf("flags = %q, want %q", got, tt.flags)
			}
			wantProgram := ""
			if len(tt.programs) > 0 {
				wantProgram = tt.programs[0]
			}
			if f.Program != wantProgram {
				t.Errorf("Program = %q, want %q", f.Program, wantProgram)
			}
			if f.Command != tt.command {
				t.Errorf("Command = %q, want the input", f.Command)
			}
			words, _ := Split(tt.command)
			if !reflect.DeepEqual(f.Words, words) {
				t.Errorf("Words = %q, Split gives %q", f.Words, words)
			}
			if len(f.Commands) != len(f.Programs) {
				t.Errorf("%d commands but %d programs", len(f.Commands), len(f.Programs))
			}
		})
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ word, want string }{
		{"", "''"},
		{"ls", "ls"},
		{"/usr/bin/a-b_c.d:1,2@x%y+z", "/usr/bin/a-b_c.d:1,2@x%y+z"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"'", `''\'''`},
		{"$HOME", "'$HOME'"},
		{"~", "'~'"},
		{"A=1", "'A=1'"},
		{"if", "'if'"},
		{"{", "'{'"},
		{"#x", "'#x'"},
		{"*", "'*'"},
		{"a\nb", "'a\nb'"},
		{"é", "'é'"},
	}
	for _, tt := range tests {
		if got := Quote(tt.word); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.word, got, tt.want)
		}
		got, err := Split(Quote(tt.word))
		if err != nil || len(got) != 1 || got[0] != tt.word {
			t.Errorf("Split(Quote(%q)) = %q, %v; want the word back", tt.word, got, err)
		}
	}
	if got := Join([]string{"rm", "-rf", "a b", ""}); got != "rm -rf 'a b' ''" {
		t.Errorf("Join = %s", got)
	}
}

// TestLiteralMatchesShell checks, against the shells installed, that for
// every command Analyze calls Literal the words are the ones the shell
// reads, and that Join quotes words so the shell reads them back.
func TestLiteralMatchesShell(t *testing.T) {
	commands := []string{
		"ls -la /tmp",
		`echo 'a $b "c" \d'`,
		"echo \"\\$ \\` \\\" \\\\ \\a\"",
		"echo \"a\\\nb\"",
		`echo a\ b \'c \\ \$x`,
		"ec\\\nho x",
		`"a"'b'c`,
		`echo '' "" x`,
		"echo 'a\nb'",
		"ls # rm -rf /",
		"echo a#b",
		"FOO=1 rm x",
		`'if' then`,
		"find . -exec rm {} \\;",
		"git show HEAD~1 --dir=~/x",
		"echo $ x$",
		`echo '{a,b}' "{a,b}" '*' \?`,
		"[ -f x ]",
		"ls;",
		"echo é \r x",
	}
	for _, sh := range shells(t) {
		for _, command := range commands {
			f, err := Analyze(command)
			if err != nil {
				t.Fatalf("Analyze(%q): %v", command, err)
			}
			if !f.Literal() {
				t.Fatalf("Analyze(%q) is not literal: %s", command, flags(f))
			}
			// After "set --" assignments are arguments too.
			words := append(append([]string(nil), f.Assignments...), f.Argv...)
			if got := shellWords(t, sh, command); !reflect.DeepEqual(got, words) {
				t.Errorf("%s reads %q as %q, Analyze gives %q", sh, command, got, words)
			}
			joined := Join(words)
			if got := shellWords(t, sh, joined); !reflect.DeepEqual(got, words) {
				t.Errorf("%s reads Join(%q) = %s as %q", sh, words, joined, got)
			}
		}
	}
}

// TestCompoundRunsMore checks against a real shell that commands Analyze
// does not call Literal do run more than their Argv: each prints a marker
// the plain argv would not.
func TestCompoundRunsMore(t *testing.T) {
	for _, sh := range shells(t) {
		for _, command := range []string{
			"true; echo MARK",
			"true && echo MARK",
			"false || echo MARK",
			"echo MARK | cat",
			"true\necho MARK",
			"echo $(echo MARK)",
			"echo `echo MARK`",
			"(echo MARK)",
			"{ echo MARK; }",
			"if true; then echo MARK; fi",
			"A=MARK; echo $A",
			"echo ${A:-MARK}",
			"cat <<EOF\nMARK\nEOF",
		} {
			f, err := Analyze(command)
			if err != nil {
				t.Fatalf("Analyze(%q): %v", command, err)
			}
			if f.Literal() {
				t.Errorf("Analyze(%q) is literal", command)
			}
			out, err := exec.Command(sh, "-c", command).Output()
			if err != nil {
				t.Fatalf("%s -c %q: %v", sh, command, err)
			}
			if !bytes.Contains(out, []byte("MARK")) {
				t.Fatalf("%s -c %q printed %q, the test is wrong", sh, command, out)
			}
		}
	}
}
