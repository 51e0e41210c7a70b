// Command argo_engines evaluates expressions with the Go libraries Argo Workflows uses: expr for
// retryStrategy.expression and {{=...}} tags, govaluate for `when` (as Argo 3.x calls it: every
// variable token is read as a string). It reads one JSON request per line on stdin and writes one JSON
// answer per line, so tests can compare these engines with argomlops.workflows.expr.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/Knetic/govaluate"
	"github.com/antonmedv/expr"
)

type request struct {
	Engine     string                 `json:"engine"`
	Expression string                 `json:"expression"`
	Env        map[string]interface{} `json:"env"`
}

type answer struct {
	Value interface{} `json:"value"`
	Error string      `json:"error,omitempty"`
}

func evalGovaluate(when string) (interface{}, error) {
	parsed, err := govaluate.NewEvaluableExpression(when)
	if err != nil {
		return nil, err
	}
	tokens := parsed.Tokens()
	for i, token := range tokens {
		if token.Kind == govaluate.VARIABLE {
			token.Kind = govaluate.STRING
			tokens[i] = token
		}
	}
	parsed, err = govaluate.NewEvaluableExpressionFromTokens(tokens)
	if err != nil {
		return nil, err
	}
	return parsed.Evaluate(nil)
}

func main() {
	scanner := bufio.NewScanner(os.Stdin)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	out := json.NewEncoder(os.Stdout)
	for scanner.Scan() {
		var req request
		var result interface{}
		err := json.Unmarshal(scanner.Bytes(), &req)
		if err == nil {
			switch req.Engine {
			case "expr":
				result, err = expr.Eval(req.Expression, req.Env)
			case "govaluate":
				result, err = evalGovaluate(req.Expression)
			default:
				err = fmt.Errorf("unknown engine %q", req.Engine)
			}
		}
		reply := answer{Value: result}
		if err != nil {
			reply.Error = err.Error()
		}
		if encodeErr := out.Encode(reply); encodeErr != nil {
			panic(encodeErr)
		}
	}
}
