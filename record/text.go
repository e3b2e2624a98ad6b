package record

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"
)

// textTime is how transcripts and tables show times, always in UTC.
const textTime = "2006-01-02T15:04:05.000Z"

// WriteText writes events as a transcript for people: one header line per
// event (time, seq, what happened, decision and rule) and indented detail
// lines, the text of a command prefixed with "> ". Everything that came from
// the agent or the target is shown with control characters escaped, so a
// transcript cannot drive the reader's terminal.
func WriteText(w io.Writer, events []Event) error {
	bw := bufio.NewWriter(w)
	for _, ev := range events {
		fmt.Fprintf(bw, "%s #%d ", ev.Time.UTC().Format(textTime), ev.Seq)
		switch {
		case ev.Type == EventStart && ev.Start != nil:
			writeStart(bw, ev.Start)
		case ev.Type == EventCommand && ev.Command != nil:
			writeCommand(bw, ev.Command)
		case ev.Type == EventResult && ev.Result != nil:
			writeResult(bw, ev.Result)
		case ev.Type == EventEnd && ev.End != nil:
			writeEnd(bw, ev.End)
		default:
			fmt.Fprintf(bw, "%s\n", clean(ev.Type))
		}
		for _, t := range ev.Truncated {
			fmt.Fprintf(bw, "%s%s truncated: %d bytes in full, sha256 %s\n", indent, clean(t.Field), t.Bytes, clean(t.SHA256))
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing transcript: %w", err)
	}
	return nil
}

const indent = "    "

func writeStart(w io.Writer, s *Start) {
	fmt.Fprintf(w, "session start\n")
	writeFields(w, "protocol", s.Protocol, "target", s.Target,
		"destination", s.Destination, "client", s.Client)
	writeFields(w, "workload", s.Workload, "subject", s.Subject,
		"groups", strings.Join(s.Groups, ","), "issuer", s.Issuer)
	var pid, cgroup string
	if s.PID != 0 {
		pid = strconv.FormatUint(uint64(s.PID), 10)
	}
	if s.CgroupID != 0 {
		cgroup = strconv.FormatUint(s.CgroupID, 10)
	}
	writeFields(w, "pid", pid, "uid", strconv.FormatUint(uint64(s.UID), 10),
		"executable", s.Executable, "cgroup", cgroup)
	var attrs []string
	for _, k := range slices.Sorted(maps.Keys(s.Attributes)) {
		attrs = append(attrs, k, s.Attributes[k])
	}
	writeFields(w, attrs...)
}

func writeCommand(w io.Writer, c *Command) {
	head := []string{clean(c.Decision)}
	if c.Rule != "" {
		head = append(head, "rule="+quote(c.Rule))
	} else {
		head = append(head, "(default)")
	}
	if c.Command != "" {
		head = append(head, "command="+quote(c.Command))
	}
	if c.Kind != "" {
		head = append(head, "kind="+quote(c.Kind))
	}
	fmt.Fprintf(w, "%s\n", strings.Join(head, " "))
	text := strings.ReplaceAll(c.Text, "\r\n", "\n")
	for l := range strings.SplitSeq(text, "\n") {
		fmt.Fprintf(w, "%s> %s\n", indent, clean(l))
	}
	var out []string
	if c.Review != "" {
		r := "review " + clean(c.Review)
		if c.Decider != "" {
			r += " by " + clean(c.Decider)
		}
		out = append(out, r)
	}
	if c.Recording != "" {
		out = append(out, "terminal recording "+clean(c.Recording)+recordingDigest(c.RecordingSHA256, c.RecordingBytes))
	}
	if c.Message != "" {
		out = append(out, "message: "+clean(c.Message))
	}
	if c.Tag != "" {
		out = append(out, clean(c.Tag))
	}
	if c.Rows != 0 {
		out = append(out, fmt.Sprintf("rows=%d", c.Rows))
	}
	if c.Masked != 0 {
		m := fmt.Sprintf("masked=%d", c.Masked)
		if len(c.MaskRules) > 0 {
			m += " (" + clean(strings.Join(c.MaskRules, ",")) + ")"
		}
		out = append(out, m)
	}
	if c.Error != "" {
		out = append(out, "error: "+clean(c.Error))
	}
	if c.DurationMS != 0 {
		d := time.Duration(c.DurationMS * float64(time.Millisecond))
		out = append(out, d.Round(time.Microsecond).String())
	}
	if len(out) > 0 {
		fmt.Fprintf(w, "%s%s\n", indent, strings.Join(out, ", "))
	}
}

func writeResult(w io.Writer, r *Result) {
	fmt.Fprintf(w, "result of #%d\n", r.Of)
	var out []string
	if r.Tag != "" {
		out = append(out, clean(r.Tag))
	}
	if r.Rows != 0 {
		out = append(out, fmt.Sprintf("rows=%d", r.Rows))
	}
	if r.Masked != 0 {
		out = append(out, fmt.Sprintf("masked=%d (%s)", r.Masked, clean(strings.Join(r.MaskRules, ","))))
	}
	if r.Error != "" {
		out = append(out, "error: "+clean(r.Error))
	}
	if r.DurationMS != 0 {
		d := time.Duration(r.DurationMS * float64(time.Millisecond))
		out = append(out, d.Round(time.Microsecond).String())
	}
	if r.RecordingSHA256 != "" {
		out = append(out, "terminal recording"+recordingDigest(r.RecordingSHA256, r.RecordingBytes))
	}
	if len(out) > 0 {
		fmt.Fprintf(w, "%s%s\n", indent, strings.Join(out, ", "))
	}
}

// recordingDigest is how a transcript shows a terminal recording's hash:
// " (537 bytes, sha256 4e88…)", or nothing when the log holds none.
func recordingDigest(sha string, n int64) string {
	if sha == "" {
		return ""
	}
	return fmt.Sprintf(" (%d bytes, sha256 %s)", n, clean(sha))
}

func writeEnd(w io.Writer, e *End) {
	fmt.Fprintf(w, "session end")
	if e.Reason != "" {
		fmt.Fprintf(w, ": %s", clean(e.Reason))
	}
	d := time.Duration(e.Seconds * float64(time.Second)).Round(time.Millisecond)
	fmt.Fprintf(w, "\n%scommands=%d denied=%d duration=%s\n", indent, e.Commands, e.Denied, d)
}

// writeFields writes one indented line of key=value pairs, leaving out empty
// values; nothing when all are empty.
func writeFields(w io.Writer, kv ...string) {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			parts = append(parts, clean(kv[i])+"="+quote(kv[i+1]))
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "%s%s\n", indent, strings.Join(parts, " "))
	}
}

// WriteSummaryTable writes sums as an aligned table with a header line.
func WriteSummaryTable(w io.Writer, sums []Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTARTED\tDURATION\tPROTOCOL\tTARGET\tWORKLOAD\tSUBJECT\tCOMMANDS\tDENIED\tSTATE")
	for _, s := range sums {
		started, duration, state := "-", "-", "ended"
		if !s.Started.IsZero() {
			started = s.Started.UTC().Format(textTime)
		}
		if s.Incomplete {
			state = "incomplete"
		} else if !s.Started.IsZero() {
			duration = s.Ended.Sub(s.Started).Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\n",
			clean(s.ID), started, duration, cell(s.Start.Protocol), cell(s.Start.Target),
			cell(s.Start.Workload), cell(s.Start.Subject), s.Commands, s.Denied, state)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("writing session table: %w", err)
	}
	return nil
}

// cell is a table cell: never empty, no control characters, no tabs.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.ReplaceAll(clean(s), "\t", `\t`)
}

// quote returns s as is when it is a plain word, else Go-quoted.
func quote(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return r == ' ' || r == '"' || r == '\\' || r == '=' || !unicode.IsPrint(r)
	}) || !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	return s
}

// clean escapes what could act on a terminal: control and format characters
// (ESC, CR, bidirectional overrides, ...) and invalid UTF-8. Tabs stay.
func clean(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, unsafeRune) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unsafeRune(r):
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		default:
			b.WriteRune(r)
		}
		i += size
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return r != '\t' && !unicode.IsPrint(r)
}
