package asciicast

import (
	"bytes"
	"strconv"
	"unicode/utf8"
)

// Filter passes a recording's terminal output on to the replaying
// operator's terminal with only what renders it: text, the C0 controls
// that move the cursor, and the escape sequences of colours, cursor
// movement, erasing, scroll regions, the alternate screen, bracketed paste
// and the like. It drops everything else the agent or the target could
// have sent to make the operator's terminal act: OSC strings (52 writes the
// clipboard, 0 and 2 the title, 8 makes links), DCS, SOS, PM and APC
// strings (DECRQSS, XTGETTCAP, tmux passthrough, graphics), requests that
// the terminal answer into its input (device status and attributes, mode
// and version queries, ENQ), window operations, mouse and focus reporting,
// and changes to what the keyboard sends.
//
// It keeps one rule that makes it safe whatever comes: it writes a
// sequence only once it has seen all of it and allowed it, and writes it in
// a form it built itself, so the terminal never starts a sequence the
// Filter did not finish, and is in its ground state after every piece the
// Filter writes. A dropped sequence is dropped whole, however it is split
// across output events. C1 controls (U+0080 to U+009F), which some
// terminals obey as ESC sequences, are taken as the ESC sequences they
// stand for. A sequence still unfinished when the recording ends is
// dropped.
//
// It keeps the terminal decoding UTF-8, where a byte from 0x80 to 0x9F is
// only ever part of a character: it drops ESC % @ (which makes Linux's
// console and xterm leave UTF-8 and obey such bytes as C1 controls, so that
// "ě6n", C4 9B 36 6E, would reach them as CSI 6 n) and the switches to
// 8-bit controls. Linux's console also stops decoding UTF-8 after SO and
// SGR 11 and 12 (it shows each byte as a glyph, and takes 0x9B as CSI),
// which the Filter passes because they draw lines and PC characters: from
// one of them to the next SI or reset, it writes each character holding
// such a byte as "?" (garbled there in any case).
//
// The zero Filter is ready to use; one Filter filters one stream.
type Filter struct {
	state  filterState
	seq    []byte // a CSI's parameter and intermediate bytes, or an ESC's intermediates
	ignore bool   // the sequence being read is malformed or too long: dropped at its end
	carry  []byte // an incomplete UTF-8 character waiting for its rest
	// undecoded: an SO or SGR 11 or 12 was written and no SI or reset
	// since, so Linux's console may be taking bytes without decoding UTF-8.
	undecoded bool
}

type filterState uint8

const (
	stateGround filterState = iota
	stateEscape             // after ESC (and intermediates, in seq)
	stateCSI                // after ESC [
	stateString             // in an OSC, DCS, SOS, PM or APC string, until its end
	stateOSC                // in an OSC string: BEL ends it too
)

// Bounds of what the Filter collects of one sequence: longer ones are not
// what a terminal session needs, and are dropped.
const (
	maxCSI   = 256
	maxInter = 2
)

// Append appends the filtered data to dst and returns it.
func (f *Filter) Append(dst []byte, data string) []byte {
	if len(f.carry) > 0 {
		// The rest of a character cut at the end of the previous data.
		data = string(f.carry) + data
		f.carry = f.carry[:0]
	}
	tail := len(data) - min(len(data), utf8.UTFMax-1)
	if cut := tail + incompleteTail([]byte(data[tail:])); cut < len(data) {
		f.carry = append(f.carry, data[cut:]...)
		data = data[:cut]
	}
	for i := 0; i < len(data); {
		b := data[i]
		if f.state == stateGround {
			// Runs of plain text are copied at once.
			j := i
			for j < len(data) && data[j] >= 0x20 && data[j] < 0x7f {
				j++
			}
			dst = append(dst, data[i:j]...)
			if i = j; i == len(data) {
				break
			}
			b = data[i]
		}
		if b < utf8.RuneSelf {
			dst = f.byte(dst, b)
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(data[i:])
		switch {
		case r >= 0x80 && r <= 0x9f:
			// A C1 control: ESC and the byte it stands for.
			dst = f.byte(dst, 0x1b)
			dst = f.byte(dst, byte(r-0x40))
		case f.state == stateString || f.state == stateOSC:
			// Part of the string being dropped.
		default:
			// Text, and it ends any sequence it interrupts.
			f.drop()
			switch {
			case r == utf8.RuneError && size == 1:
				dst = append(dst, "\uFFFD"...)
			case f.undecoded && holdsC1Byte(data[i:i+size]):
				dst = append(dst, '?')
			default:
				dst = append(dst, data[i:i+size]...)
			}
		}
		i += size
	}
	return dst
}

// drop abandons the sequence being read.
func (f *Filter) drop() {
	f.state, f.seq, f.ignore = stateGround, f.seq[:0], false
}

// byte takes one ASCII byte.
func (f *Filter) byte(dst []byte, b byte) []byte {
	switch b {
	case 0x1b: // ESC: a new sequence, whatever was being read
		f.drop()
		f.state = stateEscape
		return dst
	case 0x18, 0x1a: // CAN, SUB: cancel the sequence
		f.drop()
		return dst
	}
	switch f.state {
	case stateString:
		return dst
	case stateOSC:
		if b == 0x07 {
			f.drop()
		}
		return dst
	}
	if b < 0x20 {
		// A terminal carries out a C0 control at once, also in the middle
		// of a sequence: so does the Filter, for the harmless ones.
		if safeC0(b) {
			dst = append(dst, b)
			switch b {
			case 0x0e: // SO
				f.undecoded = true
			case 0x0f: // SI
				f.undecoded = false
			}
		}
		return dst
	}
	if b == 0x7f { // DEL: ignored by terminals
		return dst
	}
	switch f.state {
	case stateGround:
		return append(dst, b)
	case stateEscape:
		return f.escape(dst, b)
	case stateCSI:
		return f.csi(dst, b)
	}
	return dst
}

// safeC0 reports the C0 controls passed on: BEL, BS, HT, LF, VT, FF, CR,
// SO and SI. Left out are NUL, ENQ (the terminal answers it) and the
// rest, which render nothing.
func safeC0(b byte) bool { return b >= 0x07 && b <= 0x0f }

// escape takes a byte after ESC.
func (f *Filter) escape(dst []byte, b byte) []byte {
	if b < 0x30 { // an intermediate
		if len(f.seq) == maxInter {
			f.ignore = true
		} else {
			f.seq = append(f.seq, b)
		}
		return dst
	}
	if len(f.seq) == 0 && !f.ignore {
		switch b {
		case '[':
			f.state = stateCSI
			return dst
		case ']':
			f.state = stateOSC
			return dst
		case 'P', 'X', '^', '_': // DCS, SOS, PM, APC
			f.state = stateString
			return dst
		}
	}
	if !f.ignore && escAllowed(f.seq, b) {
		dst = append(dst, 0x1b)
		dst = append(dst, f.seq...)
		dst = append(dst, b)
		if len(f.seq) == 0 && b == 'c' { // RIS, reset
			f.undecoded = false
		}
	}
	f.drop()
	return dst
}

// escAllowed reports the ESC sequences passed on: saving and restoring
// the cursor, keypad modes, index, next line, tab set, reverse index,
// single and locking shifts, reset, back and forward index, character
// set designation (94- and 96-character sets into G0 to G3, which map
// printable characters and never make a byte a control) and the switch to
// UTF-8 (ESC % G). Left out are DECID (ESC Z, answered), screen's title
// (ESC k), the switches out of UTF-8 (ESC % @, the ISO 2022 default) and
// to other encodings (ESC % 8, ESC % / F), the 7- and 8-bit control
// switches (ESC SP F, ESC SP G) and ANSI conformance levels (ESC SP L, M
// and N), and the rest.
func escAllowed(inter []byte, final byte) bool {
	switch len(inter) {
	case 0:
		switch final {
		case '6', '7', '8', '9', '=', '>', 'D', 'E', 'H', 'M', 'N', 'O', 'c', 'n', 'o', '|', '}', '~':
			return true
		}
	case 1, 2:
		switch inter[0] {
		case '(', ')', '*', '+', '-', '.', '/': // designate a character set
			// DEC's two-byte names (%5, "?, &4 and the like) end in a digit
			// or symbol, which leaves out lookalikes of ESC % @.
			return len(inter) == 1 || (inter[1] == '%' || inter[1] == '"' || inter[1] == '&') && final < 0x40
		case '#': // line size, DECALN
			return len(inter) == 1 && (final >= '3' && final <= '6' || final == '8')
		case '%': // select the character set encoding: only UTF-8
			return len(inter) == 1 && final == 'G'
		}
	}
	return false
}

// csi takes a byte after ESC [.
func (f *Filter) csi(dst []byte, b byte) []byte {
	switch {
	case b >= 0x40: // the final byte
		if !f.ignore {
			n := len(dst)
			dst = appendCSI(dst, f.seq, b)
			if b == 'm' && len(dst) > n && sgrStopsDecoding(f.seq) {
				f.undecoded = true
			}
		}
		f.drop()
		return dst
	case len(f.seq) == maxCSI:
		f.ignore = true
	case b >= 0x30 && len(f.seq) > 0 && (f.seq[len(f.seq)-1] < 0x30 || b >= '<'):
		// A parameter after an intermediate, or a private marker after
		// the first byte: malformed, and terminals ignore it.
		f.ignore = true
	default:
		f.seq = append(f.seq, b)
	}
	return dst
}

// appendCSI appends ESC [ seq final when it is a sequence that renders,
// or its rendering part; otherwise nothing. seq is the parameter bytes
// (a private marker <=>? first) and the intermediates.
func appendCSI(dst, seq []byte, final byte) []byte {
	var marker byte
	if len(seq) > 0 && seq[0] >= '<' && seq[0] <= '?' {
		marker, seq = seq[0], seq[1:]
	}
	params, inter := seq, seq[len(seq):]
	for i, c := range seq {
		if c < 0x30 {
			params, inter = seq[:i], seq[i:]
			break
		}
	}
	ok := false
	switch {
	case len(inter) == 1 && marker == 0:
		switch inter[0] {
		case ' ':
			// DECSCUSR (cursor style), SL and SR (scroll left and right).
			ok = final == 'q' || final == '@' || final == 'A'
		case '!':
			ok = final == 'p' // DECSTR, soft reset
		}
	case len(inter) > 0:
	case final == 'h' || final == 'l':
		return appendModes(dst, marker, params, final)
	case marker == '?':
		ok = final == 'J' || final == 'K' // selective erase
	case marker == 0:
		switch final {
		case '@', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'P', 'S', 'T', 'X', 'Z',
			'`', 'a', 'b', 'd', 'e', 'f', 'g', 'm', 'r', 's', 'u':
			// Cursor movement and position, erase, insert and delete,
			// scrolling, tabs, SGR, the scroll region, save and restore.
			ok = true
		}
		// Left out: n (device status), c (device attributes), t (window
		// operations and reports), x (DECREQTPARM), i (media copy), q
		// (LEDs), p, y, w, z, {, |, }, ~ (requests, tests and rectangle
		// operations).
	}
	// Left out with a > = or < marker: secondary and tertiary attributes,
	// XTVERSION, title modes, modifyOtherKeys, the kitty keyboard protocol's
	// stack, and the queries of the rest.
	if !ok {
		return dst
	}
	dst = append(dst, 0x1b, '[')
	if marker != 0 {
		dst = append(dst, marker)
	}
	dst = append(dst, params...)
	dst = append(dst, inter...)
	return append(dst, final)
}

// decModes are the DEC private modes (CSI ? N h/l) passed on: cursor keys,
// insert-like scrolling, reverse video, origin, autowrap, cursor blink and
// visibility, reverse wraparound, the alternate screen, left and right
// margins, bracketed paste and synchronized output. Left out are the mouse
// and focus reports (9, 1000-1016), which make the terminal write into
// its input, and modes that change what the keyboard sends or resize the
// window.
var decModes = map[int]bool{1: true, 4: true, 5: true, 6: true, 7: true, 12: true, 25: true, 45: true,
	47: true, 69: true, 1047: true, 1048: true, 1049: true, 2004: true, 2026: true}

// ansiModes are the ANSI modes (CSI N h/l) passed on: insert and
// newline. Keyboard lock (2) and local echo (12) are not.
var ansiModes = map[int]bool{4: true, 20: true}

// appendModes appends a set or reset of modes with only the allowed ones
// among params, each written as its plain number (so a terminal reads the
// number checked, whatever it does with leading zeros or overflow);
// nothing when none is allowed.
func appendModes(dst []byte, marker byte, params []byte, final byte) []byte {
	allowed := ansiModes
	switch marker {
	case '?':
		allowed = decModes
	case 0:
	default:
		return dst
	}
	start := len(dst)
	for len(params) > 0 {
		p := params
		if i := bytes.IndexByte(params, ';'); i >= 0 {
			p, params = params[:i], params[i+1:]
		} else {
			params = nil
		}
		n, ok := modeNumber(p)
		if !ok || !allowed[n] {
			continue
		}
		if len(dst) == start {
			dst = append(dst, 0x1b, '[')
			if marker != 0 {
				dst = append(dst, marker)
			}
		} else {
			dst = append(dst, ';')
		}
		dst = strconv.AppendInt(dst, int64(n), 10)
	}
	if len(dst) == start {
		return dst
	}
	return append(dst, final)
}

// modeNumber parses a mode parameter: decimal digits, at most 5 of them
// after leading zeros.
func modeNumber(p []byte) (int, bool) {
	for len(p) > 1 && p[0] == '0' {
		p = p[1:]
	}
	if len(p) == 0 || len(p) > 5 {
		return 0, false
	}
	n := 0
	for _, c := range p {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// sgrStopsDecoding reports whether an SGR's parameters, read the way
// Linux's console reads them (numbers modulo 2^32, an empty one 0, the
// colour of 38 and 48 skipped when complete), hold 11 or 12: the PC
// character sets, in which it takes bytes without decoding UTF-8. ':' is
// taken as ';' (Linux ignores a sequence holding one). Kernels older than
// the console's 256-colour support did not skip the colours, and read
// 38;5;11 as SGR 11.
func sgrStopsDecoding(params []byte) bool {
	var ps [maxCSI + 1]uint32
	n := 0
	for _, c := range params {
		switch {
		case c == ';' || c == ':':
			n++
		case c >= '0' && c <= '9':
			ps[n] = ps[n]*10 + uint32(c-'0')
		}
	}
	for i := 0; i <= n; i++ {
		switch ps[i] {
		case 11, 12:
			return true
		case 38, 48:
			switch {
			case i+2 <= n && ps[i+1] == 5:
				i += 2 // 5;index
			case i+4 <= n && ps[i+1] == 2:
				i += 4 // 2;r;g;b
			default:
				i++ // the colour's kind, whatever it is
			}
		}
	}
	return false
}

// holdsC1Byte reports whether the UTF-8 encoding of a character holds a
// byte from 0x80 to 0x9F, which a terminal not decoding UTF-8 may take as
// a C1 control.
func holdsC1Byte(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 && s[i] <= 0x9f {
			return true
		}
	}
	return false
}
