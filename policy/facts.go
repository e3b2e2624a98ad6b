package policy

import (
	"fmt"
	"reflect"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/ext"
	"github.com/google/cel-go/interpreter"
)

// The CEL side of the request's facts. Each namespace (sql, identity,
// target, workload) is declared as an object type whose fields a small type
// provider knows, so the checker rejects `sql.kindd` at load time. At run
// time the variables are the Request's own structs; each field is read by a
// plain getter, without reflection.

// CEL type names of the fact namespaces.
const (
	sqlType      = "interlock.SQL"
	identityType = "interlock.Identity"
	targetType   = "interlock.Target"
	workloadType = "interlock.Workload"
	sshType      = "interlock.SSH"
	forwardType  = "interlock.SSHForward"
	envType      = "interlock.SSHEnv"
	fileType     = "interlock.SSHFile"
)

// field describes one field of a fact namespace for CEL.
type field[T any] struct {
	name string
	typ  *types.Type
	get  func(adapter types.Adapter, v *T) ref.Val
}

func stringField[T any](name string, get func(*T) string) field[T] {
	return field[T]{name: name, typ: types.StringType, get: func(_ types.Adapter, v *T) ref.Val {
		return types.String(get(v))
	}}
}

func boolField[T any](name string, get func(*T) bool) field[T] {
	return field[T]{name: name, typ: types.BoolType, get: func(_ types.Adapter, v *T) ref.Val {
		return types.Bool(get(v))
	}}
}

func intField[T any](name string, get func(*T) int64) field[T] {
	return field[T]{name: name, typ: types.IntType, get: func(_ types.Adapter, v *T) ref.Val {
		return types.Int(get(v))
	}}
}

// objectField is a nested namespace (ssh.forward, ssh.file) read from the
// same struct as its parent, with its own CEL type.
func objectField[T any](name string, typ *types.Type) field[T] {
	return field[T]{name: name, typ: typ, get: func(_ types.Adapter, v *T) ref.Val {
		return &factObject{typ: typ, v: v}
	}}
}

func listField[T any](name string, get func(*T) []string) field[T] {
	return field[T]{name: name, typ: types.NewListType(types.StringType), get: func(a types.Adapter, v *T) ref.Val {
		return types.NewStringList(a, get(v))
	}}
}

// factStruct is the CEL description of one namespace.
type factStruct struct {
	typ    *types.Type
	names  []string
	fields map[string]*types.FieldType
}

func newFactStruct[T any](adapter types.Adapter, typeName string, fs ...field[T]) *factStruct {
	s := &factStruct{typ: types.NewObjectType(typeName), fields: map[string]*types.FieldType{}}
	for _, f := range fs {
		s.names = append(s.names, f.name)
		s.fields[f.name] = &types.FieldType{
			Type: f.typ,
			// Presence is "not the zero value", as for proto3 scalars:
			// has(sql.kind) is false for a non-SQL request.
			IsSet: func(target any) bool {
				v, ok := target.(*T)
				return ok && v != nil && isSet(f.get(adapter, v))
			},
			GetFrom: func(target any) (any, error) {
				v, ok := target.(*T)
				if !ok || v == nil {
					return nil, fmt.Errorf("reading %s.%s from a %T", typeName, f.name, target)
				}
				return f.get(adapter, v), nil
			},
		}
	}
	return s
}

func isSet(v ref.Val) bool {
	switch v := v.(type) {
	case types.String:
		return v != ""
	case types.Bool:
		return bool(v)
	case interface{ Size() ref.Val }:
		return v.Size() != types.IntZero
	}
	return true
}

// factTypes is the type provider of the policy environment: the standard
// registry plus the fact namespaces.
type factTypes struct {
	*types.Registry
	structs map[string]*factStruct
}

func newFactTypes() (*factTypes, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, fmt.Errorf("creating the cel type registry: %w", err)
	}
	p := &factTypes{Registry: reg, structs: map[string]*factStruct{}}
	for _, s := range []*factStruct{
		newFactStruct(reg, sqlType,
			stringField("command", func(s *SQL) string { return s.Command }),
			stringField("kind", func(s *SQL) string { return s.Kind }),
			listField("commands", (*SQL).commands),
			listField("tables", func(s *SQL) []string { return s.Tables }),
			listField("functions", func(s *SQL) []string { return s.Functions }),
			boolField("has_where", func(s *SQL) bool { return s.HasWhere }),
			stringField("text", func(s *SQL) string { return s.Text }),
			stringField("database", func(s *SQL) string { return s.Database }),
			stringField("user", func(s *SQL) string { return s.User }),
		),
		newFactStruct(reg, sshType,
			stringField("request", func(s *SSH) string { return s.Request }),
			stringField("user", func(s *SSH) string { return s.User }),
			stringField("command", func(s *SSH) string { return s.Command }),
			listField("argv", func(s *SSH) []string { return s.Argv }),
			listField("programs", func(s *SSH) []string { return s.Programs }),
			listField("program_paths", func(s *SSH) []string { return s.ProgramPaths }),
			listField("assignments", func(s *SSH) []string { return s.Assignments }),
			boolField("compound", func(s *SSH) bool { return s.Compound }),
			stringField("subsystem", func(s *SSH) string { return s.Subsystem }),
			objectField[SSH]("forward", types.NewObjectType(forwardType)),
			objectField[SSH]("env", types.NewObjectType(envType)),
			objectField[SSH]("file", types.NewObjectType(fileType)),
		),
		// The nested namespaces are views of the same *SSH.
		newFactStruct(reg, forwardType,
			stringField("host", func(s *SSH) string { return s.ForwardHost }),
			intField("port", func(s *SSH) int64 { return s.ForwardPort }),
		),
		newFactStruct(reg, envType,
			stringField("name", func(s *SSH) string { return s.EnvName }),
			stringField("value", func(s *SSH) string { return s.EnvValue }),
		),
		newFactStruct(reg, fileType,
			stringField("op", func(s *SSH) string { return s.FileOp }),
			stringField("path", func(s *SSH) string { return s.FilePath }),
			stringField("target", func(s *SSH) string { return s.FileTarget }),
			boolField("writes", func(s *SSH) bool { return s.FileWrites }),
		),
		newFactStruct(reg, identityType,
			stringField("subject", func(i *Identity) string { return i.Subject }),
			listField("groups", func(i *Identity) []string { return i.Groups }),
			stringField("issuer", func(i *Identity) string { return i.Issuer }),
		),
		newFactStruct(reg, targetType,
			stringField("name", func(t *Target) string { return t.Name }),
			stringField("protocol", func(t *Target) string { return t.Protocol }),
			stringField("address", func(t *Target) string { return t.Address }),
		),
		newFactStruct(reg, workloadType,
			stringField("name", func(w *Workload) string { return w.Name }),
		),
	} {
		p.structs[s.typ.TypeName()] = s
	}
	return p, nil
}

func (p *factTypes) FindStructType(name string) (*types.Type, bool) {
	if s, ok := p.structs[name]; ok {
		return types.NewTypeTypeWithParam(s.typ), true
	}
	return p.Registry.FindStructType(name)
}

// FindIdent resolves the namespaces' type names, so that
// `type(sql) == interlock.SQL` plans.
func (p *factTypes) FindIdent(name string) (ref.Val, bool) {
	if s, ok := p.structs[name]; ok {
		return s.typ, true
	}
	return p.Registry.FindIdent(name)
}

func (p *factTypes) FindStructFieldNames(name string) ([]string, bool) {
	if s, ok := p.structs[name]; ok {
		return s.names, true
	}
	return p.Registry.FindStructFieldNames(name)
}

func (p *factTypes) FindStructFieldType(name, fieldName string) (*types.FieldType, bool) {
	if s, ok := p.structs[name]; ok {
		ft, ok := s.fields[fieldName]
		return ft, ok
	}
	return p.Registry.FindStructFieldType(name, fieldName)
}

// NewValue refuses to build fact objects: a rule reads facts, it does not
// make them (`interlock.SQL{}` fails at evaluation, and so fails closed).
func (p *factTypes) NewValue(name string, fields map[string]ref.Val) ref.Val {
	if _, ok := p.structs[name]; ok {
		return types.NewErr("%s values cannot be created in a rule", name)
	}
	return p.Registry.NewValue(name, fields)
}

// commands is sql.commands: the handler's list, or the statement's own
// command when the handler gave none.
func (s *SQL) commands() []string {
	if len(s.Commands) == 0 && s.Command != "" {
		return []string{s.Command}
	}
	return s.Commands
}

// newCELEnv is the environment every rule's `when` is compiled in.
func newCELEnv() (*cel.Env, *factTypes, error) {
	ft, err := newFactTypes()
	if err != nil {
		return nil, nil, err
	}
	env, err := cel.NewEnv(
		cel.CustomTypeAdapter(ft.Registry),
		cel.CustomTypeProvider(ft),
		cel.Variable("sql", ft.structs[sqlType].typ),
		cel.Variable("ssh", ft.structs[sshType].typ),
		cel.Variable("identity", ft.structs[identityType].typ),
		cel.Variable("target", ft.structs[targetType].typ),
		cel.Variable("workload", ft.structs[workloadType].typ),
		ext.Strings(),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("creating the cel environment: %w", err)
	}
	return env, ft, nil
}

// factObject is a fact namespace as a CEL value. Field selection never goes
// through it (the planner reads fields with the provider's getters on
// Value()); it exists so that a namespace used whole (`type(sql)`,
// `sql == sql`) is a proper value.
type factObject struct {
	typ *types.Type
	v   any // *SQL, *SSH, *Identity, *Target or *Workload
}

func (o *factObject) ConvertToNative(t reflect.Type) (any, error) {
	if reflect.TypeOf(o.v).AssignableTo(t) {
		return o.v, nil
	}
	return nil, fmt.Errorf("converting %s to %v: unsupported", o.typ.TypeName(), t)
}

func (o *factObject) ConvertToType(t ref.Type) ref.Val {
	switch {
	case t == types.TypeType:
		return o.typ
	case t.TypeName() == o.typ.TypeName():
		return o
	}
	return types.NewErr("type conversion error from '%s' to '%s'", o.typ.TypeName(), t.TypeName())
}

func (o *factObject) Equal(other ref.Val) ref.Val {
	p, ok := other.(*factObject)
	return types.Bool(ok && p.v == o.v)
}

func (o *factObject) Type() ref.Type { return o.typ }
func (o *factObject) Value() any     { return o.v }

// activation binds the CEL variables to one Request. Every namespace is
// always bound: a request without SQL sees an SQL with zero values.
type activation struct {
	req      Request
	zeroSQL  SQL
	zeroSSH  SSH
	sql      factObject
	ssh      factObject
	identity factObject
	target   factObject
	workload factObject
	// regexSpent is what the matches of the rule being evaluated have
	// cost (see guardedMatch); Decide resets it for each rule.
	regexSpent uint64
}

func (p *Policy) newActivation(r *Request) *activation {
	a := &activation{req: *r}
	s := a.req.SQL
	if s == nil {
		s = &a.zeroSQL
	}
	a.sql = factObject{typ: p.types.structs[sqlType].typ, v: s}
	h := a.req.SSH
	if h == nil {
		h = &a.zeroSSH
	}
	a.ssh = factObject{typ: p.types.structs[sshType].typ, v: h}
	a.identity = factObject{typ: p.types.structs[identityType].typ, v: &a.req.Identity}
	a.target = factObject{typ: p.types.structs[targetType].typ, v: &a.req.Target}
	a.workload = factObject{typ: p.types.structs[workloadType].typ, v: &a.req.Workload}
	return a
}

func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "sql":
		return &a.sql, true
	case "ssh":
		return &a.ssh, true
	case "identity":
		return &a.identity, true
	case "target":
		return &a.target, true
	case "workload":
		return &a.workload, true
	case regexSpentName:
		return &a.regexSpent, true
	}
	return nil, false
}

func (a *activation) Parent() interpreter.Activation { return nil }
