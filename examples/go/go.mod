module crmstream.dev/examples/validate

go 1.19

require github.com/xeipuuv/gojsonschema v1.2.0
