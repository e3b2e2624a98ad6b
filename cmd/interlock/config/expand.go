package config

import (
	"fmt"

	"github.com/goccy/go-yaml/ast"
)

// maxExpandedValues bounds how many values a file stands for once its
// aliases are expanded. Anchors and aliases are allowed (and merge keys,
// `<<: *base`), but each alias copies what it names, and a few lines of
// aliases of aliases stand for millions of values: the YAML library would
// build them all, taking minutes and gigabytes for a file of a few hundred
// bytes.
const maxExpandedValues = 1 << 20

// checkExpansion refuses a file whose aliases expand past
// maxExpandedValues, before the library expands them.
func checkExpansion(path string, body ast.Node) error {
	anchors := map[string]int{}
	if n := expandedValues(body, anchors); n > maxExpandedValues {
		return &FieldError{File: path, Err: fmt.Errorf(
			"anchors and aliases expand to more than %d values; write the configuration out instead", maxExpandedValues)}
	}
	return nil
}

// expandedValues counts the values n stands for with its aliases
// expanded, saturating just past maxExpandedValues. anchors holds the count
// of each anchor defined so far (an alias can name only an earlier anchor).
func expandedValues(n ast.Node, anchors map[string]int) int {
	if isNil(n) {
		return 0
	}
	sum := func(counts ...int) int {
		total := 0
		for _, c := range counts {
			total += c
			if total > maxExpandedValues {
				return maxExpandedValues + 1
			}
		}
		return total
	}
	switch v := n.(type) {
	case *ast.AnchorNode:
		c := expandedValues(v.Value, anchors)
		if !isNil(v.Name) {
			anchors[v.Name.String()] = c
		}
		return c
	case *ast.AliasNode:
		if isNil(v.Value) {
			return 1
		}
		if c, ok := anchors[v.Value.String()]; ok {
			return c
		}
		return 1
	case *ast.TagNode:
		return expandedValues(v.Value, anchors)
	case *ast.MappingKeyNode:
		return expandedValues(v.Value, anchors)
	case *ast.MappingValueNode:
		return sum(expandedValues(v.Key, anchors), expandedValues(v.Value, anchors))
	case *ast.MappingNode:
		total := 1
		for _, mv := range v.Values {
			total = sum(total, expandedValues(mv, anchors))
		}
		return total
	case *ast.SequenceNode:
		total := 1
		for _, e := range v.Values {
			total = sum(total, expandedValues(e, anchors))
		}
		return total
	}
	return 1
}
