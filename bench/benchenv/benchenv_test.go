package benchenv

import (
	"errors"
	"strconv"
	"strings"
	"testing"
)

func TestCleanups(t *testing.T) {
	var c Cleanups
	var order []int
	boom := errors.New("boom")
	for i := range 3 {
		c.OnClose(func() error {
			order = append(order, i)
			if i == 1 {
				return boom
			}
			return nil
		})
	}
	if err := c.Close(); !errors.Is(err, boom) {
		t.Errorf("Close = %v, want the failing clean-up's error", err)
	}
	if len(order) != 3 || order[0] != 2 || order[1] != 1 || order[2] != 0 {
		t.Errorf("ran %v, want newest first", order)
	}
	if err := c.Close(); err != nil || len(order) != 3 {
		t.Errorf("second Close: %v, ran %v", err, order)
	}
}

func TestHost(t *testing.T) {
	h := DescribeHost()
	if h.CPUs < 1 || h.CPU == "" {
		t.Errorf("DescribeHost = %+v", h)
	}
	if l := LoadAverage(); l != "?" {
		if _, err := strconv.ParseFloat(l, 64); err != nil || strings.TrimSpace(l) != l {
			t.Errorf("LoadAverage = %q", l)
		}
	}
}
